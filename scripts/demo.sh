#!/usr/bin/env bash
# demo.sh — a netns lab with a client, a load-balancer host running
# `spooky attach` and three spooky-backend servers on one bridge; spooky-client
# sends QUIC through the XDP load balancer (l2dsr and ipip) and through the
# HTTP/3 request tier, and `spooky stats` shows where the packets went.
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
CONNS=${CONNS:-60}
REQUESTS=${REQUESTS:-2}
BACKENDS=(b1 b2 b3)
WEIGHTS=(100 200 300)
WORK=""
# Pins of the demo's XDP programs, apart from a real spooky's /sys/fs/bpf/spooky.
PINS=/sys/fs/bpf/spkdemo

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
	if [ -d "$PINS" ]; then rm -rf "$PINS"; fi
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
for b in spooky spooky-backend spooky-client; do
	if [ ! -x "$BIN/$b" ]; then
		echo "demo.sh: $BIN/$b missing: run 'make build' first" >&2
		exit 1
	fi
done
for tool in ip nsenter; do
	command -v "$tool" >/dev/null || { echo "demo.sh: needs $tool" >&2; exit 1; }
done
# ethtool turns off the client's TX checksum offload (see docs/lab.md).
if ! command -v ethtool >/dev/null; then
	echo "demo.sh: installing ethtool" >&2
	apt-get install -y -qq ethtool >/dev/null || { apt-get update -qq && apt-get install -y -qq ethtool >/dev/null; }
fi
if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
	mount -t bpf bpf /sys/fs/bpf
fi

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
# ipip adds 20 octets: room for them on the path from lb to the backends.
for h in lb "${BACKENDS[@]}"; do
	ip -n "${PREFIX}br" link set "v-$h" mtu 1600
	ip -n "$PREFIX$h" link set eth0 mtu 1600
done
# Native XDP_TX on a veth delivers only if the peer runs XDP too (veth.c).
run_in br "$BIN/spooky" xdp-pass attach v-lb --pin-root "$PINS/br" >/dev/null
# Native XDP drops the client's half-done (offloaded) UDP checksums.
run_in client ethtool -K eth0 tx off >/dev/null
# The client reaches the VIPs through the load balancer.
for vip in 198.18.0.10 198.18.0.20 198.18.0.30; do
	ip -n "${PREFIX}client" route add "$vip/32" via 198.18.0.2
done
cat <<'PLAN'
  client   198.18.0.1    spooky-client
  lb       198.18.0.2    spooky attach eth0: VIPs 198.18.0.10 (l2dsr), .20 (ipip), .30 (l7)
  b1       198.18.0.11   spooky-backend, server ID 0b01, weight 100
  b2       198.18.0.12   spooky-backend, server ID 0b02, weight 200
  b3       198.18.0.13   spooky-backend, server ID 0b03, weight 300
PLAN

say "starting spooky-backend on each backend (direct server return: VIPs on lo)"
for i in 0 1 2; do
	b=${BACKENDS[$i]} n=$((11 + i))
	sid=$(printf '0b%02x' $((i + 1)))
	for vip in 198.18.0.10 198.18.0.20; do
		ip -n "$PREFIX$b" addr add "$vip/32" dev lo
	done
	run_in "$b" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0 \
		net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
	# ipip: strip the tunnel header in XDP (no tunnel device needed).
	run_in "$b" "$BIN/spooky" decap attach eth0 --pin-root "$PINS/$b" >/dev/null
	for addr in 198.18.0.10:443 198.18.0.20:443 "198.18.0.$n:8443"; do
		log="$WORK/$b-${addr//[^0-9]/_}.log"
		run_in "$b" "$BIN/spooky-backend" --listen "$addr" --name "$b" \
			--config-id 1 --server-id "$sid" --nonce-len 8 >"$log" 2>&1 &
		echo "  $b on $addr (pid $!)"
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

say "starting spooky attach eth0 on lb"
ip -n "${PREFIX}lb" addr add 198.18.0.30/32 dev lo
CERTS=$ROOT/examples/certs
cat >"$WORK/spooky.yaml" <<YAML
# The demo's configuration; examples/spooky.yaml documents every field.
services:
  - name: web
    address: 198.18.0.10
    port: 443
    forwarding: l2dsr
    hash: 4-tuple            # one client, many connections: spread them
    cid: [{config_id: 1, server_id_len: 2, nonce_len: 8}]
    backends:
      - {name: b1, address: 198.18.0.11, weight: ${WEIGHTS[0]}, server_id: "0b01"}
      - {name: b2, address: 198.18.0.12, weight: ${WEIGHTS[1]}, server_id: "0b02"}
      - {name: b3, address: 198.18.0.13, weight: ${WEIGHTS[2]}, server_id: "0b03"}
  - name: tunnel
    address: 198.18.0.20
    port: 443
    forwarding: ipip
    hash: 4-tuple
    cid: [{config_id: 1, server_id_len: 2, nonce_len: 8}]
    backends:
      - {name: b1, address: 198.18.0.11, weight: ${WEIGHTS[0]}, server_id: "0b01"}
      - {name: b2, address: 198.18.0.12, weight: ${WEIGHTS[1]}, server_id: "0b02"}
      - {name: b3, address: 198.18.0.13, weight: ${WEIGHTS[2]}, server_id: "0b03"}
  - name: edge
    address: 198.18.0.30
    port: 443
    mode: l7
    tls: [{server_names: [example.test], cert: $CERTS/example.test.crt, key: $CERTS/example.test.key}]
    routes: [{pool: app, transforms: {response_headers: {set: {X-Via-Spooky: l7}}}}]
pools:
  - name: app
    policy: round_robin
    upstreams:
      - {address: "h3://198.18.0.11:8443", tls: {insecure_skip_verify: true}}
      - {address: "h3://198.18.0.12:8443", tls: {insecure_skip_verify: true}}
      - {address: "h3://198.18.0.13:8443", tls: {insecure_skip_verify: true}}
YAML
"$BIN/spooky" validate -c "$WORK/spooky.yaml"
run_in lb "$BIN/spooky" attach eth0 -c "$WORK/spooky.yaml" --pin-root "$PINS/lb" >"$WORK/spooky.log" 2>&1 &
echo "  spooky attach (pid $!, log $WORK/spooky.log)"
for _ in $(seq 100); do
	grep -q "msg=serving" "$WORK/spooky.log" && break
	sleep 0.1
done
grep -q "msg=serving" "$WORK/spooky.log" || { echo "demo.sh: spooky did not start:"; cat "$WORK/spooky.log"; exit 1; }

failed=0
for url in https://198.18.0.10/ https://198.18.0.20/; do
	say "spooky-client → $url through XDP ($CONNS connections × $REQUESTS requests)"
	run_in client "$BIN/spooky-client" --url "$url" --conns "$CONNS" \
		--requests "$REQUESTS" --insecure || failed=1
done
say "spooky-client → https://198.18.0.30/ through the HTTP/3 request tier"
run_in client "$BIN/spooky-client" --url https://198.18.0.30/ --conns 3 \
	--requests "$REQUESTS" --insecure || failed=1
echo "  (the request tier balances each request, round robin, so one connection's"
echo "   requests are answered by several backends: that is expected here)"

say "spooky stats eth0 (XDP counters on lb)"
run_in lb "$BIN/spooky" stats eth0 --pin-root "$PINS/lb"

say "tearing down"
if [ "$failed" != 0 ]; then
	echo "demo.sh: some requests failed (see above)" >&2
	exit 1
fi
echo "done: QUIC connections were spread by weight through XDP (l2dsr and ipip) and proxied by the HTTP/3 tier."
