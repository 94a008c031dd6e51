/*
 * stats: summarise one station's rows of a shared CSV file. A p2pnode
 * example job (WASI preview 1, built with clang and wasi-libc; see
 * README.md): every job gets the same input, measurements.csv
 * (station,date,temperature_c), and writes two declared outputs:
 *
 *   stats.json    {"station":"oslo","days":365,"min":-9.1,"mean":6.4,"max":17.3,"warmest":"2025-07-22"}
 *   station.csv   the station's own rows
 *
 *   stats STATION
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
	if (argc != 2 || strlen(argv[1]) == 0 || strlen(argv[1]) > 64 || strpbrk(argv[1], ",\"\\\n") != NULL) {
		fprintf(stderr, "usage: stats STATION\n");
		return 2;
	}
	const char *want = argv[1];
	FILE *in = fopen("measurements.csv", "r");
	if (in == NULL) {
		perror("stats: measurements.csv");
		return 1;
	}
	FILE *rows = fopen("station.csv", "w");
	if (rows == NULL) {
		perror("stats: station.csv");
		return 1;
	}
	fputs("date,temperature_c\n", rows);

	char line[256], warmest[32] = "";
	long days = 0, lineno = 0;
	double sum = 0, min = 0, max = 0;
	while (fgets(line, sizeof line, in) != NULL) {
		lineno++;
		if (lineno == 1 || line[0] == '\n')
			continue; /* header, blank */
		char *station = strtok(line, ","), *date = strtok(NULL, ","), *temp = strtok(NULL, ",\n");
		if (station == NULL || date == NULL || temp == NULL) {
			fprintf(stderr, "stats: line %ld: want station,date,temperature_c\n", lineno);
			return 1;
		}
		if (strcmp(station, want) != 0)
			continue;
		char *end;
		double t = strtod(temp, &end);
		if (end == temp || *end != '\0') {
			fprintf(stderr, "stats: line %ld: %s is not a temperature\n", lineno, temp);
			return 1;
		}
		if (days == 0 || t < min)
			min = t;
		if (days == 0 || t > max) {
			max = t;
			snprintf(warmest, sizeof warmest, "%s", date);
		}
		sum += t;
		days++;
		fprintf(rows, "%s,%.1f\n", date, t);
	}
	fclose(in);
	if (fclose(rows) != 0) {
		perror("stats: station.csv");
		return 1;
	}
	if (days == 0) {
		fprintf(stderr, "stats: no rows for station %s\n", want);
		return 1;
	}
	FILE *out = fopen("stats.json", "w");
	if (out == NULL) {
		perror("stats: stats.json");
		return 1;
	}
	char json[256];
	snprintf(json, sizeof json, "{\"station\":\"%s\",\"days\":%ld,\"min\":%.1f,\"mean\":%.1f,\"max\":%.1f,\"warmest\":\"%s\"}\n",
	         want, days, min, sum / days, max, warmest);
	fputs(json, out);
	if (fclose(out) != 0) {
		perror("stats: stats.json");
		return 1;
	}
	fputs(json, stdout);
	return 0;
}
