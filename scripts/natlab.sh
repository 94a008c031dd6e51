#!/usr/bin/env bash
# NAT lab: real p2pnode processes in network namespaces behind nftables NATs.
#
#            10.99.0.0/24 "internet" (bridge in netns <id>-wan)
#     ┌──────────┬──────────┬─────────────┬─────────────┬──────────────┐
#   auth1      auth2     router r1      router r2      router r3
#  .11        .12       .21 cone       .22 cone        .23 symmetric
#                         │              │               │
#                   192.168.1.0/24  192.168.2.0/24   192.168.3.0/24
#                     worker w1       client c1        worker w3
#
# Cone routers masquerade (Linux keeps the source port: endpoint-independent
# mapping) and drop unsolicited inbound packets; the symmetric router
# masquerades with fully random ports (a new mapping per destination), so a
# hole punch cannot work through it and the relay must carry its jobs.
#
# Asserts: both workers register through their NATs (with /p2p-circuit
# addresses); the client's series completes; client<->w1 ends up direct
# (hole punched, DCUtR) and client<->w3 stays relayed. Prints a NAT grid and,
# with --bench, benchmark lines.
#
# Usage: sudo scripts/natlab.sh [--bench] [--keep] [--one-authority]
#   P2PNODE_BIN=path   use this binary instead of building one
#   NATLAB_JOBS=n      jobs in the series (default 8)
#   NATLAB_REACH=auto|private   reachability of NATed nodes (default auto)
# Needs root, ip (iproute2) and nft (nftables). Uses only addresses inside
# namespaces it creates, and removes them (and its processes) on exit.
set -euo pipefail

BENCH=0 KEEP=0 AUTHS=2
for a in "$@"; do
	case "$a" in
	--bench) BENCH=1 ;;
	--keep) KEEP=1 ;;
	--one-authority) AUTHS=1 ;;
	-h | --help) sed -n '2,27p' "$0"; exit 0 ;;
	*) echo "natlab: unknown argument $a" >&2; exit 2 ;;
	esac
done
JOBS=${NATLAB_JOBS:-8}
REACH=${NATLAB_REACH:-auto}

die() { echo "natlab: FAIL: $*" >&2; exit 1; }
log() { printf '[%6.2fs] %s\n' "$(elapsed)" "$*"; }
now_ms() { date +%s%3N; }
T0=$(now_ms)
elapsed() { awk -v a="$T0" -v b="$(now_ms)" 'BEGIN{printf "%.2f", (b-a)/1000}'; }

[[ $(id -u) == 0 ]] || die "needs root (network namespaces); run: sudo $0"
command -v ip >/dev/null || die "needs ip (apt-get install iproute2)"
command -v nft >/dev/null || die "needs nft (apt-get install nftables)"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ID="nl$$"                          # unique per run: namespace and link names
WORK=$(mktemp -d "/tmp/natlab.$ID.XXXX")
PIDS=()
NSS=()

teardown() {
	local rc=$?
	set +e
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	for ns in "${NSS[@]}"; do
		# Whatever still runs in a lab namespace goes with it.
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
		ip netns del "$ns" 2>/dev/null
	done
	if [[ $rc != 0 ]]; then
		echo "natlab: logs in $WORK (last lines follow)" >&2
		for f in "$WORK"/*/node.log; do
			[[ -f $f ]] || continue
			echo "--- $f" >&2
			tail -n 15 "$f" >&2
		done
	elif [[ $KEEP == 0 ]]; then
		rm -rf "$WORK"
	else
		echo "natlab: kept $WORK"
	fi
	exit $rc
}
trap teardown EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- binary
if [[ -n ${P2PNODE_BIN:-} ]]; then
	BIN=$P2PNODE_BIN
else
	BIN=$WORK/p2pnode
	log "building p2pnode"
	(cd "$ROOT" && go build -o "$BIN" ./cmd/p2pnode) || die "go build failed"
fi
[[ -x $BIN ]] || die "no binary at $BIN"

# ---------------------------------------------------------------- network
ns() { echo "$ID-$1"; }
mkns() { ip netns add "$(ns "$1")"; NSS+=("$(ns "$1")"); nsx "$1" ip link set lo up; }
nsx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

WAN=10.99.0
mkns wan
nsx wan ip link add br0 type bridge
nsx wan ip link set br0 up

# wanlink NAME IP: a veth from namespace NAME to the WAN bridge.
wanlink() {
	local n=$1 addr=$2
	ip link add "$ID$n" type veth peer name wan netns "$(ns "$n")"
	ip link set "$ID$n" netns "$(ns wan)"
	nsx wan ip link set "$ID$n" master br0 up
	nsx "$n" ip addr add "$addr/24" dev wan
	nsx "$n" ip link set wan up
}

# nat NAME LANNET TYPE: a router namespace with a LAN side and a NAT.
router() {
	local n=$1 wanip=$2 lan=$3 kind=$4
	mkns "$n"
	wanlink "$n" "$wanip"
	nsx "$n" sysctl -qw net.ipv4.ip_forward=1
	local mode="masquerade"
	[[ $kind == symmetric ]] && mode="masquerade fully-random"
	nsx "$n" nft -f - <<-EOF
		table ip nat {
			chain post { type nat hook postrouting priority srcnat; oifname "wan" $mode; }
		}
		table inet fw {
			chain input { type filter hook input priority filter; policy accept;
				iifname "wan" ct state established,related accept
				iifname "wan" drop
			}
			chain forward { type filter hook forward priority filter; policy accept;
				iifname "wan" ct state established,related accept
				iifname "wan" drop
			}
		}
	EOF
}

# host NAME ROUTER LAN.X: a namespace on ROUTER's LAN, default route via it.
lanhost() {
	local n=$1 r=$2 lan=$3 x=$4
	mkns "$n"
	ip link add "$ID$n" type veth peer name eth0 netns "$(ns "$n")"
	ip link set "$ID$n" netns "$(ns "$r")"
	nsx "$r" ip addr add "$lan.1/24" dev "$ID$n"
	nsx "$r" ip link set "$ID$n" up
	nsx "$n" ip addr add "$lan.$x/24" dev eth0
	nsx "$n" ip link set eth0 up
	nsx "$n" ip route add default via "$lan.1"
}

log "namespaces $ID-*: WAN $WAN.0/24, LANs 192.168.{1,2,3}.0/24"
mkns a1; wanlink a1 $WAN.11
[[ $AUTHS == 2 ]] && { mkns a2; wanlink a2 $WAN.12; }
router r1 $WAN.21 192.168.1 cone
router r2 $WAN.22 192.168.2 cone
router r3 $WAN.23 192.168.3 symmetric
lanhost w1 r1 192.168.1 10
lanhost c1 r2 192.168.2 10
lanhost w3 r3 192.168.3 10
# (connectivity is proven by the nodes themselves: no ping needed)

# ---------------------------------------------------------------- nodes
# The lab's "internet" is private space; libp2p only hole punches from public
# addresses, so the nodes are told to treat it as public (see node/host.go).
export P2PNODE_PUBLIC_CIDRS=$WAN.0/24

# start NAME ROLE [flags...]: run p2pnode in namespace NAME.
start() {
	local n=$1 role=$2; shift 2
	mkdir -p "$WORK/$n"
	# ip netns exec execs the node in place, so $! is the node itself (a
	# shell function here would put a subshell in between, and killing
	# that would orphan the node).
	ip netns exec "$(ns "$n")" env P2PNODE_DATA="$WORK/$n" "$BIN" --data-dir "$WORK/$n" --role "$role" \
		--ready-file "$WORK/$n/ready.json" "$@" >"$WORK/$n/node.log" 2>&1 &
	PIDS+=($!)
	eval "START_$n=$(now_ms)"
}

# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds or time is up.
wait_for() {
	local what=$1 secs=$2; shift 2
	local end=$(($(now_ms) + secs * 1000))
	until "$@" >/dev/null 2>&1; do
		(($(now_ms) < end)) || die "timed out after ${secs}s waiting for $what"
		sleep 0.05
	done
}

peer_id() { sed -n 's/.*"peer_id": *"\([^"]*\)".*/\1/p' "$WORK/$1/ready.json" | head -1; }
events() { cat "$WORK/$1/events.jsonl" 2>/dev/null || true; }
# ev_ms NAME PATTERN: wall time (ms) of NAME's first event line matching PATTERN.
ev_ms() {
	local line
	line=$(events "$1" | grep -m1 -E "$2") || return 1
	date -d "$(sed -n 's/.*"t":"\([^"]*\)".*/\1/p' <<<"$line")" +%s%3N
}

authcfg() {
	cat >"$WORK/$1/config.yaml" <<-EOF
		authority:
		  heartbeat: 5s
		  ttl: 20s
		  grant:
		    amount: 1000
	EOF
}

mkdir -p "$WORK/a1" "$WORK/a2"
authcfg a1
start a1 authority --listen /ip4/$WAN.11/tcp/4001 --listen /ip4/$WAN.11/udp/4001/quic-v1 --reachability public
wait_for "authority 1" 15 test -s "$WORK/a1/ready.json"
A1="/ip4/$WAN.11/tcp/4001/p2p/$(peer_id a1)"
BOOT=(--bootstrap "$A1")
if [[ $AUTHS == 2 ]]; then
	authcfg a2
	start a2 authority --listen /ip4/$WAN.12/tcp/4001 --listen /ip4/$WAN.12/udp/4001/quic-v1 --reachability public --bootstrap "$A1"
	wait_for "authority 2" 15 test -s "$WORK/a2/ready.json"
	BOOT+=(--bootstrap "/ip4/$WAN.12/tcp/4001/p2p/$(peer_id a2)")
fi
log "authorities up: $AUTHS"

LEAF=(--listen /ip4/0.0.0.0/tcp/4001 --listen /ip4/0.0.0.0/udp/4001/quic-v1 --reachability "$REACH")
start w1 worker "${LEAF[@]}" "${BOOT[@]}" --slots 2
start w3 worker "${LEAF[@]}" "${BOOT[@]}" --slots 2
start c1 client "${LEAF[@]}" "${BOOT[@]}"
for n in w1 w3 c1; do wait_for "$n up" 15 test -s "$WORK/$n/ready.json"; done
W1=$(peer_id w1) W3=$(peer_id w3) C1=$(peer_id c1)

status() { nsx "$1" "$BIN" status --json --data-dir "$WORK/$1" 2>/dev/null; }
# registered_relayed NAME: registered with an authority and holding a relay address.
registered_relayed() {
	local st
	st=$(status "$1") || return 1
	grep -q '"registered": true' <<<"$st" && grep -q '"relay_addrs"' <<<"$st"
}
wait_for "w1 registered with a relay address" 20 registered_relayed w1
REG_W1=$(now_ms)
wait_for "w3 registered with a relay address" 20 registered_relayed w3
log "workers registered through their NATs, relay addresses reserved"
# The event logs are flushed every 200 ms: the line may trail the status.
wait_for "w1's registered event" 5 ev_ms w1 '"kind":"registered"'
R1=$(($(ev_ms w1 '"kind":"registered"') - START_w1))
RELAY1=$((REG_W1 - START_w1))

# ---------------------------------------------------------------- series
cat >"$WORK/pi.yaml" <<-EOF
	name: natlab-pi
	module: builtin:pi
	args: ["-seed", "{seed}", "-samples", "200000"]
	params:
	  seed: {from: 1, to: $JOBS}
	outputs: [result.json]
	resources: {memory: 64MiB, timeout: 30s}
	strategy: balanced
	retries: 2
	results: $WORK/results
EOF
log "submitting $JOBS pi jobs from the client"
SUBMIT0=$(now_ms)
timeout 90 ip netns exec "$(ns c1)" "$BIN" submit "$WORK/pi.yaml" --data-dir "$WORK/c1" --json \
	>"$WORK/submit.jsonl" 2>"$WORK/submit.err" || { cat "$WORK/submit.err" >&2; die "series did not complete"; }
SUBMIT1=$(now_ms)
log "series done in $(((SUBMIT1 - SUBMIT0)))ms"

# ---------------------------------------------------------------- paths
# path PEER: the client's best connection to PEER now (status --json).
path_to() {
	{ status c1 | tr -d ' \n' | grep -o "{\"id\":\"$1\",\"conn\":\"[a-z]*\"" || true; } |
		sed 's/.*"conn":"\([a-z]*\)"/\1/' | sort -u | paste -sd, -
}
# direct_ms PEER: first relayed connection to PEER -> first direct one.
direct_ms() {
	local r d
	r=$(ev_ms c1 "\"kind\":\"connected\",\"peer\":\"$1\".*\"conn\":\"relayed\"") || return 1
	d=$(ev_ms c1 "\"kind\":\"connected\",\"peer\":\"$1\".*\"conn\":\"direct\"") || return 1
	echo $((d - r))
}
jobs_via() { grep '"kind":"outcome"' "$WORK/submit.jsonl" | grep '"status":"done"' | grep -c "\"worker\":\"$1\"" || true; }
stream_via() { { events c1 | grep '"kind":"job_stream"' | grep "\"peer\":\"$1\"" || true; } | sed -n 's/.*"conn":"\([a-z]*\)".*/\1/p' | sort -u | paste -sd, -; }

has_direct() { status c1 | tr -d ' \n' | grep -q "{\"id\":\"$1\",\"conn\":\"direct\""; }
wait_for "a direct connection client<->w1" 30 has_direct "$W1"
sleep 0.3 # the event logs flush every 200 ms
P1=$(path_to "$W1") P3=$(path_to "$W3")
D1=$(direct_ms "$W1" || echo -)
D3=$(direct_ms "$W3" || echo -)
J1=$(jobs_via "$W1") J3=$(jobs_via "$W3")
S1=$(stream_via "$W1") S3=$(stream_via "$W3")

fmt_ms() { [[ $1 == - ]] && echo - || awk -v m="$1" 'BEGIN{printf "%.2fs", m/1000}'; }
echo
echo "NAT grid (client behind cone NAT r2)"
printf '  %-12s %-18s %-16s %-16s %-16s %s\n' PAIR "NATS" "CONNECTION" "JOB STREAM" "TO DIRECT" JOBS
printf '  %-12s %-18s %-16s %-16s %-16s %s\n' client-w1 "cone / cone" "$P1" "${S1:--}" "$(fmt_ms "$D1")" "$J1"
printf '  %-12s %-18s %-16s %-16s %-16s %s\n' client-w3 "cone / symmetric" "$P3" "${S3:--}" "$(fmt_ms "$D3")" "$J3"
echo

echo "p2pnode status of the client (c1):"
nsx c1 "$BIN" status --data-dir "$WORK/c1" | sed 's/^/  /' || true
echo

# ---------------------------------------------------------------- asserts
[[ $P1 == *direct* ]] || die "client<->w1 (cone/cone) not direct: $P1"
[[ $P3 == relayed ]] || die "client<->w3 (cone/symmetric) should be relayed only, is: $P3"
[[ $((J1 + J3)) -ge $JOBS ]] || die "only $((J1 + J3)) of $JOBS jobs finished"
[[ -z $S3 || $S3 == relayed ]] || die "w3's job stream should be relayed: $S3"
grep -q '"kind":"done"' "$WORK/submit.jsonl" || die "submit reported no summary"

if [[ $BENCH == 1 ]]; then
	# Round trip per job: client time from dispatch to result minus the
	# worker's run time (summary.jsonl: seconds, run_ms), median per path.
	rtt() {
		local f
		f=$(find "$WORK/results" -name summary.jsonl | head -1)
		[[ -n $f ]] || { echo -; return; }
		grep "\"worker\":\"$1\"" "$f" | sed -n 's/.*"seconds":\([0-9.e-]*\).*"run_ms":\([0-9]*\).*/\1 \2/p' |
			awk '{print $1*1000-$2}' | sort -n | awk '{a[NR]=$1} END{if(NR==0)print "-"; else printf "%.1f\n", a[int((NR+1)/2)]}'
	}
	echo "natlab | worker start -> registered (behind cone NAT)      | $R1 ms"
	echo "natlab | worker start -> registered with relay address     | $RELAY1 ms"
	echo "natlab | first relayed contact -> direct (cone/cone, DCUtR) | ${D1} ms"
	echo "natlab | job overhead (round trip - run), direct (median)   | $(rtt "$W1") ms"
	echo "natlab | job overhead (round trip - run), relayed (median)  | $(rtt "$W3") ms"
	echo "natlab | series of $JOBS pi jobs, wall                        | $((SUBMIT1 - SUBMIT0)) ms"
fi
echo "natlab: PASS ($(elapsed)s)"
