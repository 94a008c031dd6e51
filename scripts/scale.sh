#!/usr/bin/env bash
# Scale figures: the README's scale table. Prints, for networks of 4 (2
# slots each), 64 and 200 worker processes (1 slot each) on loopback, the
# idle CPU, memory and TCP connections per worker and the jobs/s of a
# trivial series; then the authority registry's rates at 100,000 workers
# and the 1,000-worker overlay simulation.
#
#   scripts/scale.sh                 # everything (~15 min on 2 cores)
#   SIZES=4x2,64x1 scripts/scale.sh  # other network sizes
#   PROFILE=/tmp/prof scripts/scale.sh  # also a CPU and heap profile per process
#
# CPU figures are only meaningful on an otherwise quiet machine. Figures
# are measured, not asserted: this is not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=${SIZES:-4x2,64x1,200x1}
bin=$(mktemp -d)/p2pnode
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./cmd/p2pnode
if [ -n "${PROFILE:-}" ]; then
	mkdir -p "$PROFILE"
	export P2PNODE_CPUPROFILE="$PROFILE/%p.cpu" P2PNODE_MEMPROFILE="$PROFILE/%p.heap" P2PNODE_PROFILE_AFTER=${PROFILE_AFTER:-60s}
fi

echo "== processes on loopback: $sizes" >&2
"$bin" bench --scale "$sizes" --settle "${SETTLE:-30s}" --idle "${IDLE:-60s}" --jobs "${JOBS:-5000}" 2>/dev/null

echo "== authority registry, 100,000 workers" >&2
go test -run '^$' -bench 'Registry100k' -benchtime 2s ./node/authority | grep -E '^Benchmark'

echo "== overlay simulation, 1,000 workers (mocknet), TTL 4 and 5" >&2
for ttl in 4 5; do
	go test -run '^TestScaleSimulation$' -count=1 -v ./node/overlay -sim.workers 1000 -sim.ttl "$ttl" 2>/dev/null |
		grep -E 'overlay simulation|connections:|flood ttl' | sed -E 's/^ *[a-z_]+\.go:[0-9]+: //' || true
done
