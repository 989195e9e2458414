package forwarder

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
)

// These tests run the proxy on loopback addresses of the test's own host
// (127.0.0.0/8 is local, so the VIP needs no route): real sockets, real
// epoll loops, with UDP backends in the test process. The lab tests in
// test/integration run it between network namespaces with QUIC.

// echoBackend is a UDP server that counts what it receives and answers
// each datagram with its name and the datagram.
type echoBackend struct {
	name string
	conn *net.UDPConn
	got  atomic.Int64
}

func mustEchoBackend(tb testing.TB, name, addr string) *echoBackend {
	tb.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		tb.Fatal(err)
	}
	b := &echoBackend{name: name, conn: c}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			b.got.Add(1)
			out := append([]byte(name+":"), buf[:n]...)
			_, _ = c.WriteToUDPAddrPort(out, from)
		}
	}()
	tb.Cleanup(func() { c.Close() })
	return b
}

func (b *echoBackend) addr() netip.AddrPort { return b.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

func proxyTestConfig(vip netip.AddrPort, extra string, backends ...*echoBackend) string {
	var bs strings.Builder
	for _, b := range backends {
		fmt.Fprintf(&bs, "      - {name: %s, address: %s, port: %d}\n", b.name, b.addr().Addr(), b.addr().Port())
	}
	return fmt.Sprintf(`admin: {socket: /run/spooky-test/admin.sock}
%s
services:
  - name: udp
    address: %s
    port: %d
    forwarding: proxy
    hash: 4-tuple
    maglev_size: 1009
    flow_timeout: 2s
    backends:
%s`, extra, vip.Addr(), vip.Port(), bs.String())
}

func mustProxyConfig(tb testing.TB, src string) *config.Config {
	tb.Helper()
	cfg, err := config.Parse([]byte(src), "proxy.yaml")
	if err != nil {
		tb.Fatalf("parse:\n%s\n%v", src, err)
	}
	return cfg
}

// freeUDPPort returns a port no UDP socket on addr holds now.
func freeUDPPort(tb testing.TB, addr string) netip.AddrPort {
	tb.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(addr), 0)))
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

func mustProxy(tb testing.TB, cfg *config.Config) *Proxy {
	tb.Helper()
	p := NewProxy(ProxyOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Workers: 2})
	if err := p.Apply(context.Background(), cfg); err != nil {
		tb.Fatalf("apply: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// client is a connected UDP socket used through raw syscalls, so that it
// allocates nothing itself (AllocsPerRun counts the whole process).
type client struct {
	fd  int
	buf []byte
}

func mustClient(tb testing.TB, local string, to netip.AddrPort) *client {
	tb.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	c := &client{fd: fd, buf: make([]byte, 65536)}
	tb.Cleanup(c.close)
	if err := unix.Bind(fd, toSockaddr(netip.AddrPortFrom(netip.MustParseAddr(local), 0))); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Connect(fd, toSockaddr(to)); err != nil {
		tb.Fatal(err)
	}
	tv := unix.Timeval{Sec: 2}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		tb.Fatal(err)
	}
	return c
}

// close closes the socket once.
func (c *client) close() {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// write sends msg. The raw syscalls are retried on EINTR: the Go
// runtime's preemption signal (SIGURG) interrupts a blocked read.
func (c *client) write(msg []byte) (int, error) {
	for {
		n, err := unix.Write(c.fd, msg)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// read receives one datagram into c.buf, retrying on EINTR.
func (c *client) read() (int, error) {
	for {
		n, err := unix.Read(c.fd, c.buf)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// roundTrip sends msg and returns the reply, or "" if none came in 2s.
func (c *client) roundTrip(msg []byte) string {
	if _, err := c.write(msg); err != nil {
		return ""
	}
	n, err := c.read()
	if err != nil || n < 0 {
		return ""
	}
	return string(c.buf[:n])
}

// backendOf returns the name before ":" in a reply.
func backendOf(reply string) string {
	name, _, _ := strings.Cut(reply, ":")
	return name
}

func TestProxyRelaysToOneBackendPerClientAndRepliesFromTheVIP(t *testing.T) {
	a := mustEchoBackend(t, "a", "127.0.0.11:0")
	b := mustEchoBackend(t, "b", "127.0.0.12:0")
	vip := freeUDPPort(t, "127.0.0.10")
	p := mustProxy(t, mustProxyConfig(t, proxyTestConfig(vip, "", a, b)))

	seen := map[string]int{}
	for i := range 40 {
		c := mustClient(t, fmt.Sprintf("127.0.1.%d", i+1), vip)
		var first string
		for j := range 5 {
			// A connected socket receives only from the VIP: a reply
			// from any other address would not arrive.
			r := c.roundTrip([]byte(fmt.Sprintf("hello %d", j)))
			if r == "" {
				t.Fatalf("client %d datagram %d: no reply from the vip", i, j)
			}
			if j == 0 {
				first = backendOf(r)
			} else if backendOf(r) != first {
				t.Fatalf("client %d: datagram %d went to %s, the first to %s", i, j, backendOf(r), first)
			}
		}
		seen[first]++
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("clients per backend %v: want both used", seen)
	}
	st := p.Stats()
	if got := st.Events["from_clients"]; got != 200 {
		t.Errorf("from_clients %d, want 200", got)
	}
	if got := st.Events["replies"]; got != 200 {
		t.Errorf("replies %d, want 200", got)
	}
	if st.Sessions != 40 {
		t.Errorf("%d sessions open, want 40", st.Sessions)
	}
	if a.got.Load()+b.got.Load() != 200 {
		t.Errorf("backends got %d+%d datagrams, want 200", a.got.Load(), b.got.Load())
	}
}

func TestProxyClosesSessionsOfARemovedBackendAndKeepsTheOthers(t *testing.T) {
	a := mustEchoBackend(t, "a", "127.0.0.11:0")
	b := mustEchoBackend(t, "b", "127.0.0.12:0")
	vip := freeUDPPort(t, "127.0.0.10")
	p := mustProxy(t, mustProxyConfig(t, proxyTestConfig(vip, "", a, b)))
	clients := map[string][]*client{}
	for i := range 20 {
		c := mustClient(t, fmt.Sprintf("127.0.2.%d", i+1), vip)
		name := backendOf(c.roundTrip([]byte("x")))
		clients[name] = append(clients[name], c)
	}
	if len(clients["a"]) == 0 || len(clients["b"]) == 0 {
		t.Fatalf("clients per backend %d/%d: want both", len(clients["a"]), len(clients["b"]))
	}
	if err := p.Apply(context.Background(), mustProxyConfig(t, proxyTestConfig(vip, "", a))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed backend's sessions to close", func() bool {
		for _, bs := range p.Stats().Backends {
			if bs.Name == "b" {
				return false
			}
		}
		return p.Stats().Sessions == int64(len(clients["a"]))
	})
	for _, c := range clients["a"] {
		if r := c.roundTrip([]byte("y")); backendOf(r) != "a" {
			t.Fatalf("a client of a kept backend now gets %q", r)
		}
	}
	if got := p.Stats().Events["sessions_created"]; got != 20 {
		t.Errorf("%d sessions created, want 20: the kept ones must not be remade", got)
	}
	for _, c := range clients["b"] {
		if r := c.roundTrip([]byte("z")); backendOf(r) != "a" {
			t.Fatalf("a client of the removed backend gets %q, want a", r)
		}
	}
}

func TestProxyCountsAnUnreachableBackendAndClosesItsSession(t *testing.T) {
	a := mustEchoBackend(t, "a", "127.0.0.11:0")
	vip := freeUDPPort(t, "127.0.0.10")
	p := mustProxy(t, mustProxyConfig(t, proxyTestConfig(vip, "", a)))
	c := mustClient(t, "127.0.3.1", vip)
	if r := c.roundTrip([]byte("x")); backendOf(r) != "a" {
		t.Fatalf("reply %q", r)
	}
	a.conn.Close() // the kernel now answers with ICMP port unreachable
	fdsBefore := openFDs(t)
	_, _ = unix.Write(c.fd, []byte("lost"))
	waitFor(t, "the unreachable backend to be counted", func() bool {
		return p.Stats().Events["backend_unreachable"] > 0 && p.Stats().Sessions == 0
	})
	if after := openFDs(t); after >= fdsBefore {
		t.Errorf("%d open files after the session closed, %d before: the upstream socket leaked", after, fdsBefore)
	}
}

func TestProxyTableFullDropsAndCounts(t *testing.T) {
	a := mustEchoBackend(t, "a", "127.0.0.11:0")
	vip := freeUDPPort(t, "127.0.0.10")
	p := mustProxy(t, mustProxyConfig(t, proxyTestConfig(vip, "proxy: {max_sessions: 3}", a)))
	for i := range 3 {
		if r := mustClient(t, fmt.Sprintf("127.0.4.%d", i+1), vip).roundTrip([]byte("x")); r == "" {
			t.Fatalf("client %d: no reply", i)
		}
	}
	c := mustClient(t, "127.0.4.9", vip)
	tv := unix.Timeval{Usec: 200000}
	_ = unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if r := c.roundTrip([]byte("x")); r != "" {
		t.Fatalf("a fourth client got %q past a table of 3", r)
	}
	st := p.Stats()
	if st.Events["drop_session_table_full"] != 1 || st.Sessions != 3 {
		t.Errorf("table full drops %d, sessions %d; want 1 and 3", st.Events["drop_session_table_full"], st.Sessions)
	}
}

func TestProxyStrictDropsNonQUICAndCounts(t *testing.T) {
	a := mustEchoBackend(t, "a", "127.0.0.11:0")
	vip := freeUDPPort(t, "127.0.0.10")
	src := strings.Replace(proxyTestConfig(vip, "", a), "    hash: 4-tuple\n", "    hash: 4-tuple\n    strict: true\n", 1)
	p := mustProxy(t, mustProxyConfig(t, src))
	c := mustClient(t, "127.0.5.1", vip)
	tv := unix.Timeval{Usec: 200000}
	_ = unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	// No fixed bit (RFC 9000 §17.2): not QUIC.
	if r := c.roundTrip([]byte{0x00, 1, 2, 3}); r != "" {
		t.Fatalf("a non-QUIC datagram was relayed under strict: %q", r)
	}
	st := p.Stats()
	if st.Reasons["drop_not_quic_strict"] != 1 || st.Events["drop_no_backend"] != 1 || a.got.Load() != 0 {
		t.Errorf("reasons %v events %v backend got %d", st.Reasons, st.Events, a.got.Load())
	}
}

func TestProxySessionsExpireAfterFlowTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a 2s flow timeout")
	}
	a := mustEchoBackend(t, "a", "127.0.0.11:0")
	vip := freeUDPPort(t, "127.0.0.10")
	p := mustProxy(t, mustProxyConfig(t, proxyTestConfig(vip, "", a)))
	if r := mustClient(t, "127.0.6.1", vip).roundTrip([]byte("x")); r == "" {
		t.Fatal("no reply")
	}
	waitFor(t, "the idle session to expire", func() bool {
		return p.Stats().Sessions == 0 && p.Stats().Events["sessions_expired"] == 1
	})
	// Its flow table entry went with it, as XDP's sweep expires flows.
	if n := p.router.Flows(); n != 0 {
		t.Errorf("%d flows left in the flow table after the session expired", n)
	}
}

// TestProxyHotPathDoesNotAllocate relays datagrams of an established
// session both ways, by each routing path: nothing in the proxy may
// allocate per datagram.
func TestProxyHotPathDoesNotAllocate(t *testing.T) {
	sink := mustRawEcho(t, "127.0.0.13")
	vip := freeUDPPort(t, "127.0.0.10")
	key := []byte{0x8f, 0x95, 0xf0, 0x92, 0x45, 0x76, 0x5f, 0x80, 0x25, 0x69, 0x34, 0xe5, 0x0c, 0x66, 0x20, 0x7f}
	cfg := fmt.Sprintf(`services:
  - {name: udp, address: %s, port: %d, forwarding: proxy, maglev_size: 1009,
     cid: [{config_id: 0, server_id_len: 2, nonce_len: 6}, {config_id: 1, server_id_len: 2, nonce_len: 6, key: %x}],
     backends: [{name: s, address: %s, port: %d, server_id: "0001"}]}
`, vip.Addr(), vip.Port(), key, sink.Addr(), sink.Port())
	p := mustProxy(t, mustProxyConfig(t, cfg))

	quic := func(dcid []byte) []byte {
		msg := make([]byte, 1200)
		msg[0] = 0x40 // QUIC short header
		copy(msg[1:], dcid)
		return msg
	}
	enc, err := cid.NewEncoder(cid.Config{ID: 1, ServerIDLen: 2, NonceLen: 6, Key: key}, []byte{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	encrypted, err := enc.Encode(nil, []byte{1, 2, 3, 4, 5, 6})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		path string
		msg  []byte
	}{
		{"flow table", quic([]byte{0xe0, 1, 2, 3, 4, 5, 6, 7, 8})}, // codepoint 7: no config
		{"plaintext cid", quic([]byte{0x00, 0x00, 0x01, 1, 2, 3, 4, 5, 6})},
		{"encrypted cid", quic(encrypted)},
	} {
		t.Run("by "+c.path, func(t *testing.T) {
			cl := mustClient(t, fmt.Sprintf("127.0.7.%d", i+1), vip)
			if cl.roundTrip(c.msg) == "" {
				t.Fatal("no reply")
			}
			allocs := testing.AllocsPerRun(500, func() {
				if _, err := cl.write(c.msg); err != nil {
					t.Fatal(err)
				}
				if n, err := cl.read(); err != nil || n != len(c.msg) {
					t.Fatalf("reply of %d octets (%v), want %d", n, err, len(c.msg))
				}
			})
			if allocs != 0 {
				t.Errorf("%.2f allocations per datagram relayed both ways, want 0", allocs)
			}
		})
	}
	// Each path was taken: the flow table's datagrams found no CID config,
	// and the encrypted CID was decrypted once, then found in the cache.
	r := p.Stats().Reasons
	if r["cid_no_config"] < 500 || r["cid_cache_miss"] != 1 || r["tx"] < 1500 {
		t.Errorf("reasons %v: want cid_no_config ≥ 500, cid_cache_miss 1, tx ≥ 1500", r)
	}
}

// mustRawEcho runs a UDP echo server on raw syscalls (no allocations).
func mustRawEcho(tb testing.TB, addr string) netip.AddrPort {
	tb.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if err := unix.Bind(fd, toSockaddr(netip.AddrPortFrom(netip.MustParseAddr(addr), 0))); err != nil {
		tb.Fatal(err)
	}
	sa, _ := unix.Getsockname(fd)
	port := sa.(*unix.SockaddrInet4).Port
	stop := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		batch := newRxBatch(1, 65536)
		tx := newTxBatch(1)
		var pfd = []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n, _ := unix.Poll(pfd, 100); n <= 0 {
				continue
			}
			n, err := batch.recv(fd, true)
			if err != nil || n == 0 {
				continue
			}
			tx.add(batch.bufs[0][:batch.hdrs[0].Len], &batch.names[0], batch.hdrs[0].Hdr.Namelen, 0)
			_, _ = tx.send(fd)
		}
	}()
	tb.Cleanup(func() { close(stop); time.Sleep(150 * time.Millisecond); unix.Close(fd) })
	return netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port))
}

func openFDs(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	return len(ents)
}

func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProxyRelaysGROBatchesWithGSO sends ten datagrams in one GSO send
// over loopback, which a UDP_GRO socket receives as one coalesced
// message: the proxy must route each segment and send the run to the
// backend as one GSO send, which reaches the backend as ten datagrams.
func TestProxyRelaysGROBatchesWithGSO(t *testing.T) {
	a := mustEchoBackend(t, "a", "127.0.0.11:0")
	vip := freeUDPPort(t, "127.0.0.10")
	p := mustProxy(t, mustProxyConfig(t, proxyTestConfig(vip, "", a)))
	if !p.Stats().Services[0].GRO {
		t.Skip("the kernel has no UDP_GRO")
	}
	c := mustClient(t, "127.0.8.1", vip)
	batch := make([]byte, 10*100)
	for i := range 10 {
		batch[i*100] = 0x40 // QUIC short header
	}
	tx := newTxBatch(1)
	tx.add(batch, nil, 0, 100)
	if _, err := tx.send(c.fd); err != nil {
		t.Skipf("the kernel refuses UDP_SEGMENT on loopback: %v", err)
	}
	for i := range 10 {
		n, err := c.read()
		if err != nil || n != 102 {
			t.Fatalf("reply %d: %d octets (%v), want 102", i, n, err)
		}
	}
	st := p.Stats()
	if a.got.Load() != 10 || st.Events["from_clients"] != 10 || st.Events["to_backends"] != 10 {
		t.Errorf("backend got %d, events %v; want 10 datagrams each way", a.got.Load(), st.Events)
	}
	if st.Events["gro_receives"] == 0 || st.Events["gso_sends"] == 0 {
		t.Errorf("events %v: want the ten datagrams received as one GRO message and sent as one GSO send", st.Events)
	}
}

func TestProxyDropsAndCountsOversizedDatagrams(t *testing.T) {
	a := mustEchoBackend(t, "a", "127.0.0.11:0")
	vip := freeUDPPort(t, "127.0.0.10")
	p := NewProxy(ProxyOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Workers: 1})
	p.bufSize = 1500 // a datagram past it arrives truncated (MSG_TRUNC)
	if err := p.Apply(context.Background(), mustProxyConfig(t, proxyTestConfig(vip, "", a))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	c := mustClient(t, "127.0.9.1", vip)
	tv := unix.Timeval{Usec: 200000}
	_ = unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	big := make([]byte, 3000)
	big[0] = 0x40
	if r := c.roundTrip(big); r != "" {
		t.Fatalf("an oversized datagram was relayed: %d octets back", len(r))
	}
	if r := c.roundTrip(big[:1000]); backendOf(r) != "a" {
		t.Fatalf("a datagram that fits: reply %q", r)
	}
	st := p.Stats()
	if st.Events["drop_oversized"] != 1 || a.got.Load() != 1 {
		t.Errorf("drop_oversized %d, backend got %d; want 1 and 1", st.Events["drop_oversized"], a.got.Load())
	}
}

func TestProxyReloadAddsAndRemovesServicesAndCloseLeavesNothing(t *testing.T) {
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	a := mustEchoBackend(t, "a", "127.0.0.11:0")
	vip1, vip2 := freeUDPPort(t, "127.0.0.10"), freeUDPPort(t, "127.0.0.20")
	one := proxyTestConfig(vip1, "", a)
	two := one + strings.Replace(strings.SplitN(proxyTestConfig(vip2, "", a), "services:\n", 2)[1], "name: udp", "name: udp2", 1)
	p := NewProxy(ProxyOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Workers: 2})
	if err := p.Apply(context.Background(), mustProxyConfig(t, one)); err != nil {
		t.Fatal(err)
	}
	c1 := mustClient(t, "127.0.10.1", vip1)
	if backendOf(c1.roundTrip([]byte("x"))) != "a" {
		t.Fatal("no reply from the first service")
	}
	if err := p.Apply(context.Background(), mustProxyConfig(t, two)); err != nil {
		t.Fatal(err)
	}
	c2 := mustClient(t, "127.0.10.2", vip2)
	if backendOf(c2.roundTrip([]byte("x"))) != "a" {
		t.Fatal("no reply from the added service")
	}
	if err := p.Apply(context.Background(), mustProxyConfig(t, strings.Replace(proxyTestConfig(vip2, "", a), "name: udp", "name: udp2", 1))); err != nil {
		t.Fatal(err)
	}
	if backendOf(c2.roundTrip([]byte("y"))) != "a" {
		t.Fatal("the kept service stopped answering")
	}
	if st := p.Stats(); st.Events["sessions_created"] != 2 || len(st.Services) != 1 {
		t.Errorf("sessions created %d, services %d: the kept service's session must survive the reload", st.Events["sessions_created"], len(st.Services))
	}
	tv := unix.Timeval{Usec: 200000}
	_ = unix.SetsockoptTimeval(c1.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	if r := c1.roundTrip([]byte("z")); r != "" {
		t.Errorf("the removed service still answers: %q", r)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	a.conn.Close()
	c1.close()
	c2.close()
	waitFor(t, "the proxy's goroutines and sockets to be gone", func() bool {
		return runtime.NumGoroutine() <= goroutines && openFDs(t) <= fds
	})
}

func TestProxyFollowsBackendHealth(t *testing.T) {
	a := mustEchoBackend(t, "a", "127.0.0.11:0")
	b := mustEchoBackend(t, "b", "127.0.0.12:0")
	vip := freeUDPPort(t, "127.0.0.10")
	reg := health.NewRegistry(nil)
	p := NewProxy(ProxyOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Workers: 2, Health: reg})
	cfg := mustProxyConfig(t, proxyTestConfig(vip, "", a, b))
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	// b fails its checks; the daemon re-applies the config on a change.
	reg.Report(health.Backend("udp", "b"), health.Active, health.Unhealthy, "test")
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		c := mustClient(t, fmt.Sprintf("127.0.11.%d", i+1), vip)
		if r := c.roundTrip([]byte("x")); backendOf(r) != "a" {
			t.Fatalf("client %d: reply %q with b unhealthy, want a", i, r)
		}
	}
	if b.got.Load() != 0 {
		t.Errorf("the unhealthy backend got %d datagrams", b.got.Load())
	}
}
