#!/usr/bin/env bash
# demo.sh — runs `spooky attach eth0 -c examples/spooky.yaml` (the annotated
# example itself, not a generated config) in a netns lab whose hosts hold the
# example's addresses, and sends requests to every service and pool in it:
# web (l4, l2dsr, IPv4), dns-over-quic (l4, ipip, IPv6) through XDP, game
# (l4, proxy) through the userspace proxy, and edge (l7) through the HTTP/3
# request tier to its api (h2 + h3) and static
# (h2c + h1) pools. `spooky stats` then shows where the packets went.
#
#   sudo make demo            # make build, then this script
#   sudo scripts/demo.sh      # needs bin/spooky, bin/spooky-backend, bin/spooky-client
#   sudo scripts/demo.sh clean  # remove leftovers of an interrupted run
#
# Addresses come from 198.18.0.0/15 (RFC 2544) and 2001:db8::/32 (RFC 3849),
# inside namespaces this script makes; nothing leaves the machine. Namespaces
# are named spkdemo-*, apart from the tests' spk-<pid>-* ones. docs/lab.md
# draws the lab.
set -euo pipefail

PREFIX=spkdemo-
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/bin}
CONFIG=$ROOT/examples/spooky.yaml
CERTS=$ROOT/examples/certs
CONNS=${CONNS:-60}
REQUESTS=${REQUESTS:-2}
# The example's web CID config (config_id 0, 2-octet server IDs, 6-octet
# nonce, AES key) and dns-over-quic's (config_id 1, 1-octet, 8, plaintext).
WEB_KEY=000102030405060708090a0b0c0d0e0f
WORK=""
# Pins of the demo's XDP programs, apart from a real spooky's /sys/fs/bpf/spooky.
PINS=/sys/fs/bpf/spkdemo

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }

# clean kills every process in a spkdemo- namespace and deletes the namespaces
# (their veths and bridge go with them), then the pins.
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
	# Work directories, this run's or those an interrupted run left.
	rm -rf "${WORK:-/nonexistent}" /tmp/spkdemo.??????
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
"$BIN/spooky" validate -c "$CONFIG"

clean
WORK=$(mktemp -d /tmp/spkdemo.XXXXXX)
trap clean EXIT

# run_in NS CMD... runs CMD in namespace NS. nsenter leaves /sys alone (ip netns
# exec would remount it), which later bpffs work relies on.
run_in() { local ns=$1; shift; nsenter --net="/run/netns/$PREFIX$ns" -- "$@"; }

# host NAME V4 V6 LAST: a namespace with eth0 on the bridge, MAC
# 02:00:c6:12:LAST:LAST, and its first addresses (on the 198.18.0.0/24 and
# 2001:db8::/64 link every host shares).
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

# quiet CMD...: runs CMD, showing its output only if it fails.
quiet() {
	local out
	if ! out=$("$@" 2>&1); then
		printf '%s\n' "$out" >&2
		echo "demo.sh: $* failed" >&2
		exit 1
	fi
}

# addr NAME PREFIX...: more on-link addresses on NAME's eth0.
addr() {
	local name=$1 a
	shift
	for a in "$@"; do
		case $a in
		*:*) ip -n "$PREFIX$name" addr add "$a" dev eth0 nodad ;;
		*) ip -n "$PREFIX$name" addr add "$a" dev eth0 ;;
		esac
	done
}

# backend HOST LOG ARGS...: starts spooky-backend in HOST, output in $WORK/LOG.log.
backend() {
	local h=$1 log=$2
	shift 2
	# nsenter execs spooky-backend, so $! is the backend itself (a function
	# sent to the background would be a subshell: killing it kills nothing).
	nsenter --net="/run/netns/$PREFIX$h" -- "$BIN/spooky-backend" "$@" >"$WORK/$log.log" 2>&1 &
	echo "$!" >"$WORK/$log.pid"
	printf '   %-9s on %-8s %s (pid %s)\n' "$log" "$h" "$*" "$!"
}

# wait_log FILE WORD: polls (with a 10 s deadline) until FILE holds WORD.
wait_log() {
	local f=$1 word=$2
	for _ in $(seq 100); do
		grep -q "$word" "$f" && return 0
		sleep 0.1
	done
	echo "demo.sh: $f never said '$word':" >&2
	cat "$f" >&2
	exit 1
}

say "building the lab (namespaces ${PREFIX}*) with the addresses of examples/spooky.yaml"
ip netns add "${PREFIX}br"
run_in br sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n "${PREFIX}br" link add br0 type bridge mcast_snooping 0
ip -n "${PREFIX}br" link set lo up
ip -n "${PREFIX}br" link set br0 up
host client 198.18.0.1 2001:db8::1 01
host lb 198.18.0.2 2001:db8::2 02
host web-1 198.18.0.11 2001:db8::b 0b
host web-2 198.18.0.12 2001:db8::c 0c
host web-3 198.18.0.13 2001:db8::d 0d
# The example's backends and upstreams sit in subnets of their own, all on
# the one bridge: l2dsr rewrites only the Ethernet header, so the lb must
# reach each backend on-link, and holds an address in each subnet for that.
addr lb 198.18.1.254/24 198.18.2.254/24 198.18.3.254/24 2001:db8:1::fe/64
addr web-1 198.18.1.1/24 2001:db8:1::1/64 198.18.2.1/24 198.18.3.1/24
addr web-2 198.18.1.2/24 2001:db8:1::2/64 198.18.2.2/24 198.18.3.2/24
addr web-3 198.18.1.3/24
# The l7 service edge terminates on the lb itself.
ip -n "${PREFIX}lb" addr add 198.18.0.20/32 dev lo
# ipip adds 20 (IPv4) or 40 (IPv6) octets: room for them from lb to backends.
for h in lb web-1 web-2 web-3; do
	ip -n "${PREFIX}br" link set "v-$h" mtu 1600
	ip -n "$PREFIX$h" link set eth0 mtu 1600
done
# Native XDP_TX on a veth delivers only if the peer runs XDP too (veth.c).
quiet run_in br "$BIN/spooky" xdp-pass attach v-lb --pin-root "$PINS/br"
# Native XDP drops the client's half-done (offloaded) UDP checksums; the lb's
# own health probes leave through a tc program, which cannot finish them.
run_in client ethtool -K eth0 tx off >/dev/null
run_in lb ethtool -K eth0 tx off >/dev/null
# The client reaches every VIP through the load balancer.
ip -n "${PREFIX}client" route add 198.18.0.10/32 via 198.18.0.2
ip -n "${PREFIX}client" route add 198.18.0.20/32 via 198.18.0.2
ip -n "${PREFIX}client" -6 route add 2001:db8::53/128 via 2001:db8::2
ip -n "${PREFIX}client" route add 198.18.0.30/32 via 198.18.0.2
# game's backends (proxy mode) sit in 198.18.4.0/24 on web-1's and web-2's
# lo, routed by the lb only: the client cannot reach them but through spooky.
for i in 1 2; do
	ip -n "${PREFIX}web-$i" addr add "198.18.4.$i/32" dev lo
	ip -n "${PREFIX}lb" route add "198.18.4.$i/32" via "198.18.0.1$i"
done
cat <<'PLAN'
   host   addresses (eth0; VIPs on lo)           runs
   client 198.18.0.1, 2001:db8::1                spooky-client; VIPs routed via lb
   lb     198.18.0.2, 2001:db8::2, on-link       spooky attach eth0 -c examples/spooky.yaml:
          .1.254 .2.254 .3.254 2001:db8:1::fe      XDP for web, dns-over-quic; HTTP/3 tier
          lo: 198.18.0.20 (edge)                   for edge
   web-1  198.18.1.1, 2001:db8:1::1,             web-1 (h3, sid 0001), doq-1 (h3, sid 01),
          198.18.2.1, 198.18.3.1                 api-1 (h2 over TLS), static-1 (h2c)
   web-2  198.18.1.2, 2001:db8:1::2,             web-2 (h3, sid 0002), doq-2 (h3, sid 02),
          198.18.2.2, 198.18.3.2                 api-2 (h3), static-2 (h2c listener, spoken h1)
   web-3  198.18.1.3                             web-3 (h3, sid 0003)
   web-*  lo: 198.18.0.10, 2001:db8::53          (direct server return)
   web-1, web-2  lo: 198.18.4.1, .4.2            game-1, game-2 (h3 :9443, sids 0001, 0002),
                                                 reached through the proxy (VIP 198.18.0.30:4433)
PLAN

say "starting spooky-backend on the backends"
for i in 1 2 3; do
	h=web-$i
	ip -n "$PREFIX$h" addr add 198.18.0.10/32 dev lo
	# Direct server return: accept the VIP, never answer ARP for it.
	run_in "$h" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.eth0.rp_filter=0 \
		net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
	backend "$h" "web-$i" --listen 198.18.0.10:443 --name "web-$i" \
		--config-id 0 --server-id "000$i" --nonce-len 6 --key "$WEB_KEY"
done
for i in 1 2; do
	h=web-$i
	ip -n "$PREFIX$h" addr add 2001:db8::53/128 dev lo
	# dns-over-quic is ipip: strip the tunnel header in XDP (no tunnel device).
	quiet run_in "$h" "$BIN/spooky" decap attach eth0 --pin-root "$PINS/$h"
	backend "$h" "doq-$i" --listen "[2001:db8::53]:853" --name "doq-$i" \
		--config-id 1 --server-id "0$i" --nonce-len 8
done
# The edge's pools: api verifies its upstreams against the example CA as
# api.example.test; static is cleartext.
backend web-1 api-1 --protocol h2 --listen 198.18.2.1:8443 --name api-1 \
	--cert "$CERTS/example.test.crt" --key-file "$CERTS/example.test.key"
backend web-2 api-2 --protocol h3 --listen 198.18.2.2:8443 --name api-2 --server-id 02 \
	--cert "$CERTS/example.test.crt" --key-file "$CERTS/example.test.key"
for i in 1 2; do
	backend "web-$i" "game-$i" --listen "198.18.4.$i:9443" --name "game-$i" \
		--config-id 2 --server-id "000$i" --nonce-len 6
done
backend web-1 static-1 --protocol h2c --listen 198.18.3.1:8080 --name static-1
backend web-2 static-2 --protocol h2c --listen 198.18.3.2:8080 --name static-2
for log in "$WORK"/*.log; do
	wait_log "$log" "msg=\"serving"
done

say "starting spooky attach eth0 -c examples/spooky.yaml on lb"
run_in lb "$BIN/spooky" attach eth0 -c "$CONFIG" --pin-root "$PINS/lb" >"$WORK/spooky.out" 2>&1 &
note "pid $!, log $WORK/spooky.out"
wait_log "$WORK/spooky.out" "msg=serving"
note "admin API on /run/spooky/admin.sock, metrics on 127.0.0.1:9100 (in lb), health checks running"

failed=0
# client LABEL URL CONNS REQUESTS WANT...: runs spooky-client from the client
# host and checks that each backend named in WANT answered at least once.
client() {
	local label=$1 url=$2 conns=$3 reqs=$4 out
	shift 4
	say "$label"
	out=$WORK/client.out
	if ! run_in client "$BIN/spooky-client" --url "$url" --conns "$conns" --requests "$reqs" \
		--insecure | tee "$out"; then
		failed=1
	fi
	for b in "$@"; do
		if ! grep -q "^$b " "$out"; then
			echo "demo.sh: $b never answered $url" >&2
			failed=1
		fi
	done
}

client "web: https://198.18.0.10/ through XDP, l2dsr ($CONNS connections × $REQUESTS requests)" \
	https://198.18.0.10/ "$CONNS" "$REQUESTS" web-1 web-2 web-3
note "shown: 4-tuple Maglev spreads connections by weight 100/100/50 (~40/40/20 %); web's CIDs are AES-encrypted and XDP has no AES: the first datagram of each DCID goes to Go over AF_XDP, which decrypts it, forwards it and caches DCID → backend, and the rest stay in XDP (stats: SLOW PATH / BY CID, then BY CID CACHE)."

client "dns-over-quic: https://[2001:db8::53]:853/ through XDP, ipip over IPv6 (20 connections)" \
	"https://[2001:db8::53]:853/" 20 "$REQUESTS" doq-1 doq-2
note "shown: XDP wraps each datagram in IPv6 to 2001:db8:1::1 or ::2 and spooky decap strips it on the backend; the plaintext CIDs (config 1) route each connection by its server ID (stats: BY CID)."

client "game: https://198.18.0.30:4433/ through the userspace proxy (20 connections)" \
	https://198.18.0.30:4433/ 20 "$REQUESTS" game-1 game-2
note "shown: game is forwarding: proxy: spooky made 198.18.0.30 local (a local route), gives each client address a session with its own socket to game-1 or game-2 on port 9443 (which see the lb's address, not the client's), and relays replies from the VIP; connections spread by Maglev and stay put by their plaintext CIDs (config 2)."

client "edge → api: https://198.18.0.20/ through the HTTP/3 tier (8 connections × 4 requests)" \
	https://198.18.0.20/ 8 4 api-1 api-2
note "shown: edge terminates HTTP/3 and its last route sends / to pool api, least_response_time over api-1 (HTTP/2 over TLS) and api-2 (HTTP/3), both verified against certs/example.test.crt as api.example.test; it balances per request, so 'answered by more than one backend' is expected."

client "edge → static: https://198.18.0.20/static/app.css through the HTTP/3 tier (8 connections × 4 requests)" \
	https://198.18.0.20/static/app.css 8 4 static-1 static-2
note "shown: the route path_regex ^/static/.*\\.(css|js)\$ sends this to pool static, p2c over static-1 (h2c://, cleartext HTTP/2) and static-2 (http://, HTTP/1.1); again per request."

say "spooky stats eth0 (XDP counters on lb)"
run_in lb "$BIN/spooky" stats eth0 --pin-root "$PINS/lb"
note "shown: per-VIP paths, per-backend packets, per-reason counts; 198.18.0.20 is l7, so XDP passes its packets to the kernel for the HTTP/3 tier (pass_l7) and its row stays 0."

# spk CMD...: the spooky CLI on lb; it finds the admin socket in the config.
spk() { run_in lb "$BIN/spooky" "$@" -c "$CONFIG"; }

say "spooky stats --proxy (the userspace proxy's counters, from the daemon)"
spk stats --proxy
note "shown: game's sessions per backend, datagrams each way, and the decision's reasons (tx, not_quic, cid_...) named as XDP's."

# wait_state SERVICE BACKEND STATE: polls spooky backends (20 s deadline).
wait_state() {
	local start=$SECONDS
	for _ in $(seq 200); do
		if spk backends "$1" --json | python3 -c '
import json, sys
st = json.load(sys.stdin)
b = [b for s in st["services"] for b in s["backends"] if s["name"] == sys.argv[1] and b["name"] == sys.argv[2]]
sys.exit(0 if b and b[0]["state"] == sys.argv[3] else 1)' "$1" "$2" "$3"; then
			note "$1/$2 is $3 after $((SECONDS - start)) s"
			return 0
		fi
		sleep 0.1
	done
	echo "demo.sh: $1/$2 never became $3" >&2
	spk backends "$1" >&2 || true
	failed=1
	return 1
}

# without BACKEND: the last client run never reached BACKEND.
without() {
	if grep -q "^$1 " "$WORK/client.out"; then
		echo "demo.sh: $1 answered though it should take no new connection" >&2
		failed=1
	fi
}

say "health: web-3 dies (its spooky-backend is killed)"
pid=$(cat "$WORK/web-3.pid")
{ kill -KILL "$pid" && wait "$pid"; } 2>/dev/null || true
note "the quic handshake check (interval 2s, fall 3) probes web-3 through the VIP: the probe's mark steers it to web-3's MAC"
wait_state web web-3 unhealthy
spk backends web
client "web with web-3 down (20 connections)" https://198.18.0.10/ 20 1 web-1 web-2
without web-3
note "shown: web-3 left the Maglev tables; its share went to web-1 and web-2, no request failed."

say "health: web-3 comes back"
backend web-3 web-3 --listen 198.18.0.10:443 --name web-3 \
	--config-id 0 --server-id 0003 --nonce-len 6 --key "$WEB_KEY"
wait_state web web-3 healthy

say "spooky drain web/web-2"
spk drain web/web-2
wait_state web web-2 draining
client "web with web-2 draining (20 connections)" https://198.18.0.10/ 20 1 web-1 web-3
without web-2
note "shown: a draining backend takes no new connection; its server ID still routes, so established ones finish."
spk undrain web/web-2
wait_state web web-2 healthy
spk status

say "metrics (GET http://127.0.0.1:9100/metrics on lb, some lines)"
run_in lb python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9100/metrics").read().decode())' |
	grep -E '^spooky_(target_health\{.*"web"|health_checks_total\{.*web-3|config_reloads_total|xdp_backend_packets_total)' |
	grep -vE '^spooky_target_health.* 0$' | head -20

if grep -qE 'level=(WARN|ERROR)' "$WORK/spooky.out"; then
	note "spooky logged:"
	grep -E 'level=(WARN|ERROR)' "$WORK/spooky.out" | sed 's/^/     /'
fi
say "tearing down"
if [ "$failed" != 0 ]; then
	echo "demo.sh: some requests failed or some backend never answered (see above)" >&2
	exit 1
fi
echo "done: examples/spooky.yaml served every service: web and dns-over-quic through XDP, game through the userspace proxy, edge's api and static pools through the HTTP/3 tier."
