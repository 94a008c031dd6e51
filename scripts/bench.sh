#!/usr/bin/env bash
# Benchmarks: prints one table of the figures the README records.
#
#   scripts/bench.sh            # everything that can run here
#   JOBS=2000 scripts/bench.sh  # a shorter throughput run
#
# Figures are measured, not asserted: this is not a test. The NAT lab rows
# need root with ip and nft (see scripts/natlab.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-10000}
bin=$(mktemp -d)/p2pnode
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/p2pnode

row() { printf '%-72s %s\n' "$1" "$2"; }

echo "== framework: 1 authority + 4 workers + 1 client as processes on loopback" >&2
"$bin" bench --jobs "$jobs" --singles 200 2>/dev/null | tail -n +2 | while IFS= read -r line; do
	row "$(echo "$line" | sed -E 's/  +[^ ].*$//')" "$(echo "$line" | sed -E 's/^.*[^ ]  +//')"
done

metric() { # package, benchmark, unit
	go test -run '^$' -bench "^$2\$" -benchtime "${4:-3s}" "$1" 2>/dev/null |
		awk -v u="$3" '{for (i = 2; i <= NF; i++) if ($i == u) print $(i-1)}' | tail -1
}
echo "== ledger" >&2
row "notarised transfers/s at one authority (real protocol, loopback, fsync'd)" "$(metric ./node/ledgersvc BenchmarkNotarisedTransfers transfers/s) transfers/s"
row "ledger verify (signatures, links, countersignatures)" "$(metric ./ledger BenchmarkVerify blocks/s) blocks/s"
row "trivial WASM job in the executor (no network)" "$(metric ./node/exec BenchmarkRunTrivial ns/op 2s) ns/job"

echo "== overlay simulation (300 workers, mocknet)" >&2
go test -run '^TestScaleSimulation$' -count=1 -v ./node/overlay 2>/dev/null |
	grep -E 'overlay simulation|flood ttl' | sed -E 's/^ *[a-z_]+\.go:[0-9]+: //' | while IFS= read -r line; do
	row "overlay" "$line"
done

if [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v nft >/dev/null; then
	echo "== NAT lab (network namespaces)" >&2
	P2PNODE_BIN="$bin" bash scripts/natlab.sh --bench 2>&1 | grep '^natlab |' | while IFS='|' read -r _ what value; do
		row "$(echo "$what" | sed 's/^ *//;s/ *$//')" "$(echo "$value" | sed 's/^ *//')"
	done
else
	echo "(NAT lab rows skipped: run as root with ip and nft)" >&2
fi
