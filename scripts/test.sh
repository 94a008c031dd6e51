#!/usr/bin/env bash
# The whole test suite: what the README names and what CI runs (.ci/run).
#
# Installs what the tests need beyond Go when it is missing and it can
# (as root, with apt-get): iproute2 and nftables for the NAT lab, chromium
# for the visualiser's browser test, setsid for the hostile-jobs suite. Without them those tests skip and say
# how to run them (in CI they fail instead of skipping).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v setsid >/dev/null 2>&1 || need+=(util-linux) # the hostile-jobs suite
if ((${#need[@]})); then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "test.sh: installing ${need[*]}"
		apt-get update -qq >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	else
		echo "test.sh: ${need[*]} missing and not root: the NAT lab and browser tests will skip." >&2
		echo "test.sh: run as root (or apt-get install ${need[*]}) to include them." >&2
	fi
fi

echo "test.sh: gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...

echo "test.sh: go test -race ./..."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
go test -race -timeout 25m ./... 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -c '^ok ' "$log" || true)
failed=$(grep -cE '^(FAIL|--- FAIL)' "$log" || true)
if [ "$status" != 0 ]; then
	echo "test.sh: $passed passed, $failed failed"
	exit "$status"
fi

# Every decoder of wire data has a fuzz target; run each briefly so a
# regression that panics on hostile bytes fails CI. Longer runs:
#   go test -run '^$' -fuzz '^FuzzX$' -fuzztime 10m ./pkg
fuzztime=${FUZZTIME:-8s}
echo "test.sh: fuzzing ($fuzztime per target)"
while read -r pkg target; do
	[ -n "$pkg" ] || continue
	out=$(mktemp)
	ok=0
	for attempt in 1 2; do
		if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >"$out" 2>&1; then
			ok=1
			break
		fi
		# A real finding is written to testdata/fuzz and fails at once; a
		# fuzzing worker the coordinator lost on a loaded machine (no
		# crasher written) gets one more try.
		if [ -n "$(git status --porcelain -- "$pkg/testdata/fuzz/$target" 2>/dev/null)" ] || [ "$attempt" = 2 ]; then
			break
		fi
		echo "  retry $pkg $target: $(grep -m1 -iE 'fuzz|fail' "$out")"
	done
	if [ "$ok" != 1 ]; then
		cat "$out"
		echo "test.sh: fuzz target $pkg $target failed (a crasher, if any, is in $pkg/testdata/fuzz/$target)"
		echo "test.sh: $passed passed, 1 failed"
		exit 1
	fi
	rm -f "$out"
	echo "  ok $pkg $target"
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
	for t in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
		echo "./$(dirname "${f#./}") $t"
	done
done | sort -u)
nfuzz=$(grep -rh --include='*_test.go' '^func Fuzz' . | wc -l)
echo "test.sh: $((passed + nfuzz)) passed, 0 failed"
