/*
 * primes: count the primes in one block of the integers, with a segmented
 * sieve of Eratosthenes. A p2pnode example job (WASI preview 1, built with
 * clang and wasi-libc; see README.md).
 *
 *   primes BLOCK SIZE   counts the primes in [BLOCK*SIZE, (BLOCK+1)*SIZE)
 *
 * It prints one JSON line: {"block":3,"from":3000000,"to":4000000,"primes":66330}.
 * The sum over blocks 0..9 of size 1000000 is pi(10^7) = 664579.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *s, uint64_t *out) {
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (*s == '\0' || *end != '\0' || s[0] == '-')
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv) {
	uint64_t block, size;
	if (argc != 3 || parse(argv[1], &block) || parse(argv[2], &size) || size == 0 || size > 100000000 ||
	    block > (UINT64_MAX / size) - 1) {
		fprintf(stderr, "usage: primes BLOCK SIZE (SIZE at most 100000000)\n");
		return 2;
	}
	uint64_t lo = block * size, hi = lo + size;

	/* Small primes up to sqrt(hi). */
	uint64_t root = 1;
	while (root * root < hi)
		root++;
	char *small = calloc(root + 1, 1);
	char *seg = malloc(size);
	if (small == NULL || seg == NULL) {
		fprintf(stderr, "primes: out of memory\n");
		return 1;
	}
	memset(seg, 1, size);
	for (uint64_t i = 2; i <= root; i++) {
		if (small[i])
			continue;
		for (uint64_t j = i * i; j <= root; j += i)
			small[j] = 1;
		/* Cross out the multiples of i in [lo, hi), from max(i*i, first multiple >= lo). */
		uint64_t start = (lo + i - 1) / i * i;
		if (start < i * i)
			start = i * i;
		for (uint64_t j = start; j < hi; j += i)
			seg[j - lo] = 0;
	}
	uint64_t count = 0;
	for (uint64_t n = lo; n < hi; n++)
		if (n >= 2 && seg[n - lo])
			count++;
	printf("{\"block\":%llu,\"from\":%llu,\"to\":%llu,\"primes\":%llu}\n", (unsigned long long)block,
	       (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)count);
	free(small);
	free(seg);
	return 0;
}
