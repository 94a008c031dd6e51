#!/usr/bin/env bash
# NAT lab: real p2pnode processes in network namespaces behind nftables NATs,
# on a grid of NAT types (see scripts/NATLAB.md).
#
#                10.99.0.0/24 "internet" (bridge in netns <id>-wan)
#   ┌───────┬───────┬──────────┬──────────┬─────────┬────────┬────────┐
#  auth1  auth2   wN, cN    router per   ...     router rH  router rX
#  .11    .12     (no NAT)  NATed node           (hairpin)  (no hairpin)
#                           one LAN each         wH  cH     wX  cX
#
# One worker and one client per NAT type: none (N), full cone (F),
# address-restricted (A), port-restricted (P), symmetric (S); each on its
# own router. wH/cH share a router that loops traffic to its own public
# address back in (hairpin); wX/cX share one that does not. Those two pairs
# sit on separate LANs of their router, which does not route between them:
# the public address is their only direct path.
#
#   none        the node's own interface is on the internet
#   full        endpoint-independent mapping and filtering (static DNAT of
#               the node's port: anyone may send to the mapping)
#   addr        endpoint-independent mapping, address-dependent filtering
#               (inbound only from IPs the node has sent to: an nft set)
#   port        endpoint-independent mapping, address-and-port-dependent
#               filtering (conntrack: only replies get in)
#   symmetric   endpoint-dependent mapping (masquerade fully-random: a new
#               port per destination), conntrack filtering
#
# Every client submits one series; each worker refuses every client but
# those of its grid (worker.deny), so the series spread over the pairs to
# test. Asserts, per pair: the series completed; pairs that can connect
# directly in principle did, within 5 s of first contact, and ran their
# jobs direct; the others stayed relayed (and the grid says why). Prints
# the grid; with --bench, benchmark lines.
#
# Usage: sudo scripts/natlab.sh [--bench] [--keep] [--impair] [--quick]
#   --impair           1% loss each way on every WAN link (nft numgen) and,
#                      with NATLAB_DELAY=ms (default 40), that much delay
#                      +-25% (a userspace forwarder: the kernel has no netem)
#   --quick            only the pairs with something to prove under
#                      impairment (the fixes and the relay-only ones)
#   P2PNODE_BIN=path   use this binary instead of building one
#   NATLAB_JOBS=n      jobs per pair (default 2)
# Needs root, ip (iproute2) and nft (nftables). Uses only addresses inside
# namespaces it creates, and removes them (and its processes) on exit.
set -euo pipefail

BENCH=0 KEEP=0 IMPAIR=0 QUICK=0
for a in "$@"; do
	case "$a" in
	--bench) BENCH=1 ;;
	--keep) KEEP=1 ;;
	--impair) IMPAIR=1 ;;
	--quick) QUICK=1 ;;
	-h | --help) sed -n '2,43p' "$0"; exit 0 ;;
	*) echo "natlab: unknown argument $a" >&2; exit 2 ;;
	esac
done
JOBS=${NATLAB_JOBS:-2}
DELAY=${NATLAB_DELAY:-40}
LOSS=${NATLAB_LOSS:-1}

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
			grep -v "listening on" "$f" | tail -n 8 >&2
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

# ---------------------------------------------------------------- binaries
if [[ -n ${P2PNODE_BIN:-} ]]; then
	BIN=$P2PNODE_BIN
else
	BIN=$WORK/p2pnode
	log "building p2pnode"
	(cd "$ROOT" && go build -o "$BIN" ./cmd/p2pnode) || die "go build failed"
fi
[[ -x $BIN ]] || die "no binary at $BIN"
if [[ $IMPAIR == 1 && $DELAY != 0 ]]; then
	if [[ -n ${NATLAB_WANEM:-} ]]; then
		WANEM=$NATLAB_WANEM
	else
		WANEM=$WORK/wanem
		(cd "$ROOT" && go build -o "$WANEM" ./node/nattest/wanem) || die "go build wanem failed"
	fi
fi

# ---------------------------------------------------------------- the grid
# Main grid: every client with every worker. Hairpin pairs: alone.
TYPES=(none full addr port symmetric)
KEYS=(N F A P S)
if [[ $QUICK == 1 ]]; then
	# Under impairment in CI: the reversal cells, a hole-punched pair and
	# the relay-only ones; the full grid runs without --quick.
	TYPES=(full addr port symmetric)
	KEYS=(F A P S)
fi
declare -A TYPE
for i in "${!KEYS[@]}"; do TYPE[w${KEYS[$i]}]=${TYPES[$i]} TYPE[c${KEYS[$i]}]=${TYPES[$i]}; done
TYPE[wH]=hairpin TYPE[cH]=hairpin TYPE[wX]=no-hairpin TYPE[cX]=no-hairpin
WORKERS=() CLIENTS=()
for k in "${KEYS[@]}"; do WORKERS+=("w$k"); CLIENTS+=("c$k"); done
WORKERS+=(wH wX) CLIENTS+=(cH cX)
# pairs_of CLIENT: the workers it may use.
pairs_of() {
	case $1 in
	cH) echo wH ;;
	cX) echo wX ;;
	*) for k in "${KEYS[@]}"; do printf 'w%s ' "$k"; done ;;
	esac
}

# expect CLIENT-TYPE WORKER-TYPE: "direct" or "relayed: why".
expect() {
	local c=$1 w=$2
	case "$c/$w" in
	hairpin/hairpin) echo direct ;;
	no-hairpin/no-hairpin) echo "relayed: same NAT, no hairpin, LANs isolated" ;;
	none/* | */none) echo direct ;;
	symmetric/symmetric) echo "relayed: both symmetric, no port to aim at" ;;
	symmetric/port | port/symmetric) echo "relayed: symmetric mapping vs port-restricted filter" ;;
	*) echo direct ;;
	esac
}

# ---------------------------------------------------------------- network
# wait_for WHAT SECONDS CMD...: poll CMD until it succeeds or time is up.
wait_for() {
	local what=$1 secs=$2; shift 2
	local end=$(($(now_ms) + secs * 1000))
	until "$@" >/dev/null 2>&1; do
		(($(now_ms) < end)) || die "timed out after ${secs}s waiting for $what"
		sleep 0.05
	done
}

ns() { echo "$ID-$1"; }
mkns() { ip netns add "$(ns "$1")"; NSS+=("$(ns "$1")"); nsx "$1" ip link set lo up; }
nsx() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

WAN=10.99.0
mkns wan
nsx wan ip link add br0 type bridge
nsx wan ip link set br0 up

# wanlink NAME IP: NAME's "wan" interface on the WAN bridge: a veth, or with
# --impair two TAP devices joined by the forwarder (node/nattest/wanem),
# which delays and drops what NAME sends (its egress, like netem would).
wanlink() {
	local n=$1 addr=$2
	if [[ $IMPAIR == 1 && $DELAY != 0 ]]; then
		"$WANEM" -a-ns "/var/run/netns/$(ns "$n")" -a wan -b-ns "/var/run/netns/$(ns wan)" -b "$ID$n" \
			-delay "${DELAY}ms" -jitter "$((DELAY / 4))ms" -loss "$LOSS" >"$WORK/wanem-$n.log" 2>&1 &
		PIDS+=($!)
		wait_for "the WAN emulator of $n" 5 nsx wan ip link show "$ID$n"
		wait_for "the WAN emulator of $n" 5 nsx "$n" ip link show wan
		nsx wan ip link set "$ID$n" master br0 up
	else
		ip link add "$ID$n" type veth peer name wan netns "$(ns "$n")"
		ip link set "$ID$n" netns "$(ns wan)"
		nsx wan ip link set "$ID$n" master br0 up
	fi
	nsx "$n" ip addr add "$addr/24" dev wan
	nsx "$n" ip link set wan up
	if [[ $IMPAIR == 1 && $DELAY == 0 ]]; then
		# Loss only: nftables drops at random on the way out.
		nsx "$n" nft -f - <<-EOF
			table inet impair {
				chain out { type filter hook postrouting priority 300; oifname "wan" numgen random mod 100 < $LOSS drop; }
			}
		EOF
	fi
}

# lanlink ROUTER HOST NET: HOST at NET.10 behind ROUTER (NET.1).
lanlink() {
	local r=$1 n=$2 lan=$3
	mkns "$n"
	ip link add "$ID$n" type veth peer name eth0 netns "$(ns "$n")"
	ip link set "$ID$n" netns "$(ns "$r")"
	nsx "$r" ip addr add "$lan.1/24" dev "$ID$n"
	nsx "$r" ip link set "$ID$n" up
	nsx "$n" ip addr add "$lan.10/24" dev eth0
	nsx "$n" ip link set eth0 up
	nsx "$n" ip route add default via "$lan.1"
}

FW_COMMON='
	table inet fw {
		chain input { type filter hook input priority filter; policy accept;
			iifname "wan" ct state established,related accept
			iifname "wan" drop
		}
		chain forward { type filter hook forward priority filter; policy accept;
			iifname "wan" ct state established,related accept
			iifname "wan" ct status dnat accept
			iifname "wan" drop
			ip saddr 192.168.0.0/16 ip daddr 192.168.0.0/16 ct status dnat accept
			ip saddr 192.168.0.0/16 ip daddr 192.168.0.0/16 ct state established,related accept
			ip saddr 192.168.0.0/16 ip daddr 192.168.0.0/16 drop
		}
	}'

# natnode NODE TYPE IDX: NODE behind its own router of TYPE, WAN .(100+IDX),
# LAN 192.168.IDX.0/24; or on the WAN itself (.(40+IDX)) for type none.
natnode() {
	local n=$1 kind=$2 i=$3
	if [[ $kind == none ]]; then
		mkns "$n"
		wanlink "$n" "$WAN.$((40 + i))"
		return
	fi
	local r="r$n" h="192.168.$i.10"
	mkns "$r"
	wanlink "$r" "$WAN.$((100 + i))"
	nsx "$r" sysctl -qw net.ipv4.ip_forward=1
	lanlink "$r" "$n" "192.168.$i"
	local pre="" post="masquerade"
	case $kind in
	full) pre="iifname \"wan\" meta l4proto { tcp, udp } th dport 4001 dnat ip to $h" ;;
	addr)
		pre="iifname \"wan\" ip saddr @seen meta l4proto { tcp, udp } th dport 4001 dnat ip to $h"
		post="update @seen { ip daddr } masquerade"
		;;
	port) ;;
	symmetric) post="masquerade fully-random" ;;
	*) die "unknown NAT type $kind" ;;
	esac
	nsx "$r" nft -f - <<-EOF
		table ip nat {
			set seen { type ipv4_addr; flags dynamic,timeout; timeout 10m; }
			chain pre { type nat hook prerouting priority dstnat; $pre; }
			chain post { type nat hook postrouting priority srcnat; oifname "wan" $post; }
		}
		$FW_COMMON
	EOF
}

# hairpin ROUTER HAIRPIN WORKER CLIENT IDX: both behind one router with a
# fixed mapping each (public :4001 and :4002), reachable from anywhere;
# with HAIRPIN=1 the router also maps LAN traffic to its public address.
hairpin() {
	local r=$1 hp=$2 w=$3 c=$4 i=$5
	local pub="$WAN.$((100 + i))" hw="192.168.$i.10" hc="192.168.$((i + 1)).10"
	mkns "$r"
	wanlink "$r" "$pub"
	nsx "$r" sysctl -qw net.ipv4.ip_forward=1
	lanlink "$r" "$w" "192.168.$i"
	lanlink "$r" "$c" "192.168.$((i + 1))"
	local from='iifname "wan"' loop=""
	if [[ $hp == 1 ]]; then
		from=""
		loop="ct status dnat ip saddr 192.168.0.0/16 ip daddr 192.168.0.0/16 masquerade"
	fi
	nsx "$r" nft -f - <<-EOF
		table ip nat {
			chain pre { type nat hook prerouting priority dstnat;
				$from ip daddr $pub meta l4proto { tcp, udp } th dport 4001 dnat ip to $hw:4001
				$from ip daddr $pub meta l4proto { tcp, udp } th dport 4002 dnat ip to $hc:4001
			}
			chain post { type nat hook postrouting priority srcnat;
				oifname "wan" ip saddr $hw meta l4proto { tcp, udp } th sport 4001 snat ip to $pub:4001
				oifname "wan" ip saddr $hc meta l4proto { tcp, udp } th sport 4001 snat ip to $pub:4002
				oifname "wan" masquerade
				$loop
			}
		}
		$FW_COMMON
	EOF
}

log "namespaces $ID-*: WAN $WAN.0/24$([[ $IMPAIR == 1 ]] && echo ", impaired: ${DELAY}ms delay, $LOSS% loss per link")"
mkns a1; wanlink a1 $WAN.11
mkns a2; wanlink a2 $WAN.12
i=1
for k in "${KEYS[@]}"; do
	natnode "w$k" "${TYPE[w$k]}" $i
	natnode "c$k" "${TYPE[c$k]}" $((i + 10))
	i=$((i + 1))
done
hairpin rH 1 wH cH 60
hairpin rX 0 wX cX 62

# ---------------------------------------------------------------- nodes
# The lab's "internet" is private space; libp2p only hole punches from public
# addresses, so the nodes are told to treat it as public (see node/host.go).
export P2PNODE_PUBLIC_CIDRS=$WAN.0/24

# start NAME ROLE [flags...]: run p2pnode in namespace NAME.
start() {
	local n=$1 role=$2; shift 2
	mkdir -p "$WORK/$n"
	# ip netns exec execs the node in place, so $! is the node itself.
	ip netns exec "$(ns "$n")" env P2PNODE_DATA="$WORK/$n" "$BIN" --data-dir "$WORK/$n" --role "$role" \
		--ready-file "$WORK/$n/ready.json" "$@" >"$WORK/$n/node.log" 2>&1 &
	PIDS+=($!)
}

peer_id() { sed -n 's/.*"peer_id": *"\([^"]*\)".*/\1/p' "$WORK/$1/ready.json" | head -1; }
init_id() { "$BIN" init --data-dir "$WORK/$1" | sed -n 's/^peer ID: *//p'; }
events() { cat "$WORK/$1/events.jsonl" 2>/dev/null || true; }
# ev_ms NAME PATTERN: wall time (ms) of NAME's first event line matching PATTERN.
ev_ms() {
	local line
	line=$(events "$1" | grep -m1 -E "$2") || return 1
	date -d "$(sed -n 's/.*"t":"\([^"]*\)".*/\1/p' <<<"$line")" +%s%3N
}

for a in a1 a2; do
	mkdir -p "$WORK/$a"
	cat >"$WORK/$a/config.yaml" <<-EOF
		authority:
		  heartbeat: 5s
		  ttl: 20s
		  grant:
		    amount: 1000
	EOF
done
start a1 authority --listen /ip4/$WAN.11/tcp/4001 --listen /ip4/$WAN.11/udp/4001/quic-v1 --reachability public
wait_for "authority 1" 15 test -s "$WORK/a1/ready.json"
A1="/ip4/$WAN.11/tcp/4001/p2p/$(peer_id a1)"
start a2 authority --listen /ip4/$WAN.12/tcp/4001 --listen /ip4/$WAN.12/udp/4001/quic-v1 --reachability public --bootstrap "$A1"
wait_for "authority 2" 15 test -s "$WORK/a2/ready.json"
BOOT=(--bootstrap "$A1" --bootstrap "/ip4/$WAN.12/tcp/4001/p2p/$(peer_id a2)")
log "authorities up"

# Identities first: each worker refuses the clients outside its pairs.
declare -A PID_OF
for c in "${CLIENTS[@]}"; do PID_OF[$c]=$(init_id "$c"); done
for w in "${WORKERS[@]}"; do
	PID_OF[$w]=$(init_id "$w")
	deny=()
	for c in "${CLIENTS[@]}"; do
		[[ " $(pairs_of "$c") " == *" $w "* ]] || deny+=("${PID_OF[$c]}")
	done
	{
		echo "worker:"
		echo "  slots: 2"
		echo "  module_cache: $WORK/modules" # one compile, not one per worker
		echo "  deny: [$(IFS=,; echo "${deny[*]}")]"
	} >"$WORK/$w/config.yaml"
done
LEAF=(--listen /ip4/0.0.0.0/tcp/4001 --listen /ip4/0.0.0.0/udp/4001/quic-v1)
for w in "${WORKERS[@]}"; do start "$w" worker "${LEAF[@]}" "${BOOT[@]}"; done
for c in "${CLIENTS[@]}"; do start "$c" client "${LEAF[@]}" "${BOOT[@]}"; done
for n in "${WORKERS[@]}" "${CLIENTS[@]}"; do wait_for "$n up" 20 test -s "$WORK/$n/ready.json"; done

status() { nsx "$1" "$BIN" status --json --data-dir "$WORK/$1" 2>/dev/null; }
# registered_relayed NAME: registered with both authorities and, behind a
# NAT, holding a relay address.
registered() {
	local st
	st=$(status "$1") || return 1
	[[ $(grep -c '"registered": true' <<<"$st") -ge 2 ]] || return 1
	[[ ${TYPE[$1]} == none ]] || grep -q '"relay_addrs"' <<<"$st"
}
for w in "${WORKERS[@]}"; do wait_for "$w registered (relay address if NATed)" 30 registered "$w"; done
log "workers registered through their NATs: ${WORKERS[*]}"

# ---------------------------------------------------------------- series
log "submitting from ${#CLIENTS[@]} clients at once"
SUBS=()
for c in "${CLIENTS[@]}"; do
	n=$(($(pairs_of "$c" | wc -w) * JOBS))
	cat >"$WORK/$c.yaml" <<-EOF
		name: natlab-${c,,}
		module: builtin:trivial
		params:
		  i: {from: 1, to: $n}
		resources: {memory: 16MiB, timeout: 30s}
		strategy: balanced
		retries: 2
		results: $WORK/results-$c
	EOF
	timeout 240 ip netns exec "$(ns "$c")" "$BIN" submit "$WORK/$c.yaml" --data-dir "$WORK/$c" --json \
		>"$WORK/$c.submit.jsonl" 2>"$WORK/$c.submit.err" &
	SUBS+=("$!:$c")
done
SUBMIT0=$(now_ms)
FAILED=()
for s in "${SUBS[@]}"; do
	wait "${s%%:*}" || FAILED+=("${s#*:}")
done
log "series done in $(($(now_ms) - SUBMIT0))ms"
for c in "${FAILED[@]}"; do echo "--- $c:" >&2; tail -5 "$WORK/$c.submit.err" >&2; done
[[ ${#FAILED[@]} == 0 ]] || die "series did not complete: ${FAILED[*]}"
sleep 0.3 # the event logs flush every 200 ms

# ---------------------------------------------------------------- grid
# has_direct C W: the client's status lists a direct connection to W now.
has_direct() { status "$1" | tr -d ' \n' | grep -q "{\"id\":\"${PID_OF[$2]}\",\"conn\":\"direct\""; }
# to_direct C W: ms from first contact to the first direct connection; 0
# when the first contact was direct; empty when never direct.
to_direct() {
	local p=${PID_OF[$2]} f d
	f=$(ev_ms "$1" "\"kind\":\"connected\",\"peer\":\"$p\"") || return 0
	d=$(ev_ms "$1" "\"kind\":\"connected\",\"peer\":\"$p\".*\"conn\":\"direct\"") || return 0
	echo $((d - f))
}
# jobs C W CONN: jobs of C finished by W over CONN.
jobs() { events "$1" | grep '"kind":"job_finished"' | grep "\"peer\":\"${PID_OF[$2]}\"" | grep -c "\"conn\":\"$3\"" || true; }
fmt_ms() { [[ -z $1 ]] && echo - || awk -v m="$1" 'BEGIN{printf "%.2fs", m/1000}'; }

BAD=()
GRID=$WORK/grid.txt
{
	printf '%-24s %-9s %-8s %-9s %-9s %s\n' "CLIENT / WORKER" "PATH" "TO DIRECT" "JOBS D/R" "EXPECTED" "CHECK"
	for c in "${CLIENTS[@]}"; do
		for w in $(pairs_of "$c"); do
			want=$(expect "${TYPE[$c]}" "${TYPE[$w]}")
			why=""
			[[ $want == relayed:* ]] && why=" (${want#relayed: })"
			t=$(to_direct "$c" "$w")
			jd=$(jobs "$c" "$w" direct) jr=$(jobs "$c" "$w" relayed)
			path=relayed
			has_direct "$c" "$w" && path=direct
			ok=ok
			if [[ $want == direct ]]; then
				if [[ $path != direct ]]; then
					ok="NOT DIRECT"
				elif [[ -z $t || $t -gt 5000 ]]; then
					ok="SLOW ($(fmt_ms "$t"))"
				elif [[ $jr -gt 0 ]]; then
					ok="JOBS RELAYED"
				fi
			elif [[ $path == direct ]]; then
				ok="UNEXPECTED DIRECT"
			fi
			[[ $ok == ok ]] || BAD+=("$c-$w: $ok")
			printf '%-24s %-9s %-9s %-9s %-9s %s\n' "${TYPE[$c]} / ${TYPE[$w]}" "$path" "$(fmt_ms "$t")" "$jd/$jr" \
				"${want%%:*}" "$ok${why}"
		done
	done
} >"$GRID"
echo
echo "NAT grid$([[ $IMPAIR == 1 ]] && echo " (impaired: ${DELAY}ms +-$((DELAY / 4))ms delay, $LOSS% loss on every WAN link)"): client / worker, path now, first contact -> direct, jobs direct/relayed"
sed 's/^/  /' "$GRID"
echo

# ---------------------------------------------------------------- asserts
for c in "${CLIENTS[@]}"; do
	grep -q '"kind":"done"' "$WORK/$c.submit.jsonl" || die "$c: submit reported no summary"
	want=$(($(pairs_of "$c" | wc -w) * JOBS))
	got=$(grep '"kind":"outcome"' "$WORK/$c.submit.jsonl" | grep -c '"status":"done"' || true)
	[[ $got == "$want" ]] || die "$c: $got of $want jobs done"
done
# The address-restricted worker looks public to AutoNAT (the dial-back
# comes from an authority it has sent to) yet must keep its relay route.
grep -q '"relay_addrs"' <<<"$(status wA)" || die "wA (address-restricted) holds no relay reservation"
[[ ${#BAD[@]} == 0 ]] || die "cells not as possible: ${BAD[*]}"

if [[ $BENCH == 1 ]]; then
	echo "natlab | series from ${#CLIENTS[@]} clients at once, wall       | $(($(now_ms) - SUBMIT0)) ms"
	for c in "${CLIENTS[@]}"; do
		for w in $(pairs_of "$c"); do
			t=$(to_direct "$c" "$w")
			[[ -n $t ]] && echo "natlab | first contact -> direct, ${TYPE[$c]} / ${TYPE[$w]} | $t ms"
		done
	done
fi
echo "natlab: PASS ($(elapsed)s)"
