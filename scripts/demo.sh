#!/usr/bin/env bash
# demo.sh — a netns lab with a client, a load-balancer host and three
# spooky-backend servers on one bridge, and spooky-client talking to them.
#
#   sudo make demo            # make build, then this script
#   sudo scripts/demo.sh      # needs bin/spooky-backend and bin/spooky-client
#   sudo scripts/demo.sh clean  # remove leftovers of an interrupted run
#
# Addresses come from 198.18.0.0/15 (RFC 2544) and 2001:db8::/32 (RFC 3849),
# inside namespaces this script makes; nothing leaves the machine. Namespaces
# are named spkdemo-*, apart from the tests' spk-<pid>-* ones.
set -euo pipefail

PREFIX=spkdemo-
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
CONNS=${CONNS:-6}
REQUESTS=${REQUESTS:-5}
BACKENDS=(b1 b2 b3)
WORK=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

ns_exists() { [ -e "/run/netns/$1" ]; }

# clean kills every process in a spkdemo- namespace and deletes the namespaces
# (their veths and bridge go with them).
clean() {
	local ns pid
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX" || true); do
		for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
			kill -TERM "$pid" 2>/dev/null || true
		done
	done
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX" || true); do
		for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
			kill -KILL "$pid" 2>/dev/null || true
		done
		ip netns delete "$ns"
	done
	if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}

if [ "${1:-}" = clean ]; then
	clean
	exit 0
fi
if [ $# -gt 0 ]; then
	echo "usage: $0 [clean]" >&2
	exit 2
fi
if [ "$(id -u)" != 0 ]; then
	echo "demo.sh: builds network namespaces: run it as root (sudo make demo)" >&2
	exit 1
fi
for b in spooky-backend spooky-client; do
	if [ ! -x "$BIN/$b" ]; then
		echo "demo.sh: $BIN/$b missing: run 'make build' first" >&2
		exit 1
	fi
done
for tool in ip nsenter; do
	command -v "$tool" >/dev/null || { echo "demo.sh: needs $tool" >&2; exit 1; }
done

clean
WORK=$(mktemp -d /tmp/spkdemo.XXXXXX)
trap clean EXIT

# run_in NS CMD... runs CMD in namespace NS. nsenter leaves /sys alone (ip netns
# exec would remount it), which later bpffs work relies on.
run_in() { local ns=$1; shift; nsenter --net="/run/netns/$PREFIX$ns" -- "$@"; }

# host NAME V4 V6 LAST: a namespace with eth0 on the bridge, MAC 02:00:c6:12:LAST:LAST.
host() {
	local name=$1 v4=$2 v6=$3 last=$4
	ip netns add "$PREFIX$name"
	run_in "$name" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
	ip -n "${PREFIX}br" link add "v-$name" type veth peer name eth0 netns "$PREFIX$name"
	ip -n "${PREFIX}br" link set "v-$name" master br0 up
	ip -n "$PREFIX$name" link set lo up
	ip -n "$PREFIX$name" link set eth0 address "02:00:c6:12:$last:$last" up
	ip -n "$PREFIX$name" addr add "$v4/24" dev eth0
	# nodad: usable at once instead of tentative (RFC 4862 §5.4).
	ip -n "$PREFIX$name" addr add "$v6/64" dev eth0 nodad
}

say "building the lab (namespaces ${PREFIX}*)"
ip netns add "${PREFIX}br"
run_in br sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n "${PREFIX}br" link add br0 type bridge mcast_snooping 0
ip -n "${PREFIX}br" link set lo up
ip -n "${PREFIX}br" link set br0 up
host client 198.18.0.1 2001:db8::1 01
host lb 198.18.0.2 2001:db8::2 02
for i in 0 1 2; do
	n=$((11 + i))
	host "${BACKENDS[$i]}" "198.18.0.$n" "2001:db8::$(printf %x "$n")" "$(printf %02x "$n")"
done
cat <<'PLAN'
  client   198.18.0.1    2001:db8::1
  lb       198.18.0.2    2001:db8::2     (empty: no load balancer runs yet)
  b1       198.18.0.11   2001:db8::b     spooky-backend, server ID 0b01
  b2       198.18.0.12   2001:db8::c     spooky-backend, server ID 0b02
  b3       198.18.0.13   2001:db8::d     spooky-backend, server ID 0b03
PLAN

say "starting spooky-backend on each backend (IPv4 and IPv6 listeners)"
for i in 0 1 2; do
	b=${BACKENDS[$i]} n=$((11 + i))
	sid=$(printf '0b%02x' $((i + 1)))
	for addr in "198.18.0.$n:443" "[2001:db8::$(printf %x "$n")]:443"; do
		log="$WORK/$b-${addr//[^0-9a-f]/_}.log"
		run_in "$b" "$BIN/spooky-backend" --listen "$addr" --name "$b" \
			--config-id 1 --server-id "$sid" --nonce-len 8 >"$log" 2>&1 &
		echo "  $b on $addr (pid $!, log $log)"
	done
done
# Wait (polling, with a deadline) until every backend says it serves.
for log in "$WORK"/*.log; do
	for _ in $(seq 100); do
		grep -q "serving HTTP/3" "$log" && break
		sleep 0.1
	done
	grep -q "serving HTTP/3" "$log" || { echo "demo.sh: a backend did not start:"; cat "$log"; exit 1; }
done

say "NOTE: the XDP load balancer does not exist yet"
cat <<'NOTE'
  spooky's packet tier is still being written, so nothing balances here.
  The client below talks to each backend DIRECTLY, by its own address. What
  it shows: the lab works, every backend answers over HTTP/3 on IPv4 and
  IPv6, and each names itself in X-Backend. Once `spooky attach` exists,
  this script will send the same load to the VIP 198.18.0.10 instead.
NOTE

failed=0
for i in 0 1 2; do
	b=${BACKENDS[$i]} n=$((11 + i))
	for url in "https://198.18.0.$n/" "https://[2001:db8::$(printf %x "$n")]/"; do
		say "spooky-client (in client) → $b directly: $url"
		run_in client "$BIN/spooky-client" --url "$url" --conns "$CONNS" \
			--requests "$REQUESTS" --insecure || failed=1
	done
done

say "tearing down"
if [ "$failed" != 0 ]; then
	echo "demo.sh: some requests failed (see above)" >&2
	exit 1
fi
echo "done: every backend answered directly; no load balancing was shown."
