package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/forwarder"
	"github.com/spooky-lb/spooky/test/netns"
)

// vipPort is the UDP port of both VIPs (IPv4 and IPv6).
const vipPort = 443

// xdpWeights are the backends' Maglev weights: unequal, so that a spread
// that ignored them would be caught.
var xdpWeights = []int{100, 200, 300}

// xdpCID is the QUIC-LB config both the VIPs and the backends use: a
// plaintext 2-octet server ID, which XDP decodes itself (draft-21 §5.2).
var xdpCID = cid.Config{ID: 0, ServerIDLen: 2, NonceLen: 8}

// serverID of backend i (from 0).
func serverID(i int) []byte { return []byte{0x00, byte(i + 1)} }

// xdpLab is a netns lab with spooky attached natively to the load
// balancer's eth0, and on every backend host a spooky-backend bound to each
// VIP (direct server return: the VIPs sit on the backends' lo).
type xdpLab struct {
	*netns.Lab
	forwarding string
	cfgPath    string
	vip4, vip6 netip.AddrPort
	// names[i] is backend i's name: its host's name, which it returns in
	// X-Backend.
	names []string
	// procs[i] is a spooky-backend process of backend i: it shares the
	// host's mount namespace, so its root shows the host's pins.
	procs  []*backend
	spooky *spookyProc
	tb     testing.TB // the test that owns the lab and its processes
	opts   xdpLabOptions
}

// xdpLabOptions add to the config the lab writes.
type xdpLabOptions struct {
	// top is YAML for top-level sections (metrics), at column 0; the
	// lab writes the admin section itself (adminSocket).
	top string
	// service is YAML added to every service, indented by four spaces.
	service string
	// cid is the QUIC-LB config of the VIPs and backends. If its
	// ServerIDLen is zero, xdpCID.
	cid cid.Config
	// rotation, if set, are the VIPs' configs instead, during a config
	// rotation (draft-21 §3.1): backend i issues CIDs of rotation[i%n].
	rotation []cid.Config
	// attach are extra arguments of spooky attach (--dataplane).
	attach []string
	// secondLB adds the lab's second load-balancer host (lb2), where
	// nothing runs until the test starts it.
	secondLB bool
}

// backendCID is the QUIC-LB config backend i issues CIDs with.
func (x *xdpLab) backendCID(i int) cid.Config {
	if n := len(x.opts.rotation); n > 0 {
		return x.opts.rotation[i%n]
	}
	return x.cidConfig()
}

// vipCIDs are the QUIC-LB configs of the VIPs.
func (x *xdpLab) vipCIDs() []cid.Config {
	if len(x.opts.rotation) > 0 {
		return x.opts.rotation
	}
	return []cid.Config{x.cidConfig()}
}

// cidConfig is the lab's QUIC-LB config.
func (x *xdpLab) cidConfig() cid.Config {
	if x.opts.cid.ServerIDLen == 0 {
		return xdpCID
	}
	return x.opts.cid
}

// mustXDPLab builds the lab for forwarding mode "l2dsr" or "ipip".
func mustXDPLab(t *testing.T, forwarding string) *xdpLab {
	t.Helper()
	return mustXDPLabWith(t, forwarding, xdpLabOptions{})
}

// mustXDPLabWith builds the lab with opts in its config.
func mustXDPLabWith(t *testing.T, forwarding string, opts xdpLabOptions) *xdpLab {
	t.Helper()
	lab := netns.New(t, netns.Config{
		Backends: len(xdpWeights),
		// Native XDP drops the skb's partial checksum (lab-facts).
		Client: netns.HostOptions{TxChecksumOff: true},
		// The MTU leaves room for an outer IPv6 header (40 octets) on a
		// full-size client packet; XDP_TX on a veth needs an XDP program
		// on the peer; pins must outlive each spooky process.
		LB:       netns.HostOptions{MTU: 1600, PeerXDP: true, MountNS: true},
		Backend:  netns.HostOptions{MTU: 1600, MountNS: true},
		SecondLB: opts.secondLB,
	})
	x := &xdpLab{
		Lab:        lab,
		tb:         t,
		forwarding: forwarding,
		cfgPath:    filepath.Join(t.TempDir(), "spooky.yaml"),
		vip4:       netip.AddrPortFrom(netns.VIPv4, vipPort),
		vip6:       netip.AddrPortFrom(netns.VIPv6, vipPort),
		opts:       opts,
	}
	for _, vip := range []netip.Addr{netns.VIPv4, netns.VIPv6} {
		pfx := netip.PrefixFrom(vip, vip.BitLen())
		gw := netns.LBIPv4
		if vip.Is6() {
			gw = netns.LBIPv6
		}
		if err := lab.Client.AddRoute(pfx, gw); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range lab.Backends {
		x.names = append(x.names, h.Name)
		for _, vip := range []netip.Addr{netns.VIPv4, netns.VIPv6} {
			if err := h.AddVIP(vip); err != nil {
				t.Fatal(err)
			}
			b := mustStartBackend(t, h, h.Name, netip.AddrPortFrom(vip, vipPort), x.backendCID(i), serverID(i))
			if vip.Is4() {
				x.procs = append(x.procs, b)
			}
		}
		if forwarding == "ipip" {
			out, errOut, code := runSpooky(t, h, "decap", "attach", h.Iface)
			if code != 0 {
				t.Fatalf("spooky decap attach %s on %s: exit %d: %s%s", h.Iface, h, code, out, errOut)
			}
		}
	}
	x.writeConfig(t, []int{0, 1, 2})
	x.spooky = mustStartSpooky(t, lab.LB, x.cfgPath, opts.attach...)
	return x
}

// writeConfig writes the config with the given backends (indexes from 0):
// one l4 service per VIP family, hash 4-tuple so one client's connections
// spread, strict so non-QUIC datagrams are dropped.
func (x *xdpLab) writeConfig(tb testing.TB, backends []int) {
	tb.Helper()
	var b strings.Builder
	b.WriteString("log:\n  level: debug\n")
	// The lab's own admin socket, apart from a real daemon's default.
	fmt.Fprintf(&b, "admin:\n  socket: %s\n", x.adminSocket())
	b.WriteString(x.opts.top)
	b.WriteString("services:\n")
	for _, vip := range []netip.AddrPort{x.vip4, x.vip6} {
		name := "web4"
		if vip.Addr().Is6() {
			name = "web6"
		}
		fmt.Fprintf(&b, "  - name: %s\n    address: %q\n    port: %d\n    forwarding: %s\n    hash: 4-tuple\n    strict: true\n",
			name, vip.Addr(), vip.Port(), x.forwarding)
		b.WriteString(x.opts.service)
		b.WriteString("    cid:\n")
		for _, c := range x.vipCIDs() {
			key := ""
			if c.Encrypted() {
				key = fmt.Sprintf(", key: %x", c.Key)
			}
			fmt.Fprintf(&b, "      - {config_id: %d, server_id_len: %d, nonce_len: %d%s}\n", c.ID, c.ServerIDLen, c.NonceLen, key)
		}
		b.WriteString("    backends:\n")
		for _, i := range backends {
			h := x.Backends[i]
			addr := h.IPv4
			if vip.Addr().Is6() {
				addr = h.IPv6
			}
			fmt.Fprintf(&b, "      - {name: %s, address: %q, weight: %d, server_id: \"%x\"}\n", h.Name, addr, xdpWeights[i], serverID(i))
		}
	}
	if err := os.WriteFile(x.cfgPath, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// adminSocket is where the lab's spooky serves its admin API.
func (x *xdpLab) adminSocket() string {
	return filepath.Join(filepath.Dir(x.cfgPath), "admin.sock")
}

// expectedShares returns each backend's share of the VIP's Maglev table as
// spooky builds it (keys are addresses, as in forwarder.Planner).
func (x *xdpLab) expectedShares(tb testing.TB, vip netip.AddrPort) map[string]float64 {
	tb.Helper()
	var ring []forwarder.MaglevBackend
	for i, h := range x.Backends {
		addr := h.IPv4
		if vip.Addr().Is6() {
			addr = h.IPv6
		}
		ring = append(ring, forwarder.MaglevBackend{Key: addr.String(), Weight: uint32(xdpWeights[i])})
	}
	table, err := forwarder.BuildMaglev(ring, 65537)
	if err != nil {
		tb.Fatal(err)
	}
	counts := make([]int, len(ring))
	for _, e := range table {
		counts[e]++
	}
	shares := map[string]float64{}
	for i, n := range counts {
		shares[x.names[i]] = float64(n) / float64(len(table))
	}
	return shares
}

// spookyProc is a running `spooky attach`.
type spookyProc struct {
	cmd     *exec.Cmd
	log     *syncBuffer
	exited  chan struct{}
	waitErr error
}

// mustStartSpooky runs `spooky attach eth0` natively in host h and waits
// until it logs that it forwards. At cleanup it gets SIGTERM and must exit 0.
func mustStartSpooky(tb testing.TB, h *netns.Host, cfgPath string, args ...string) *spookyProc {
	tb.Helper()
	p := &spookyProc{log: &syncBuffer{}, exited: make(chan struct{})}
	args = append(append([]string{"attach", "-c", cfgPath, "--xdp-mode", "native"}, args...), h.Iface)
	p.cmd = h.Command(mustBuild(tb, "spooky"), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		tb.Fatalf("start spooky attach: %v", err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	tb.Cleanup(func() {
		if err := p.stop(); err != nil {
			tb.Error(err)
		}
	})
	p.mustWaitLog(tb, "msg=forwarding", 1)
	return p
}

// mustWaitLog waits until the log holds substr at least n times.
func (p *spookyProc) mustWaitLog(tb testing.TB, substr string, n int) {
	tb.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for strings.Count(p.log.String(), substr) < n {
		select {
		case <-p.exited:
			tb.Fatalf("spooky attach exited (%v) before logging %q %d times; log:\n%s", p.waitErr, substr, n, p.log)
		case <-deadline:
			tb.Fatalf("spooky attach did not log %q %d times within 30s; log:\n%s", substr, n, p.log)
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM and expects exit 0 within 10 s. Stopping a stopped
// process does nothing.
func (p *spookyProc) stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return fmt.Errorf("spooky attach exited with %v after SIGTERM, want 0; log:\n%s", p.waitErr, p.log)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		return fmt.Errorf("spooky attach did not exit within 10s of SIGTERM; log:\n%s", p.log)
	}
}

// runSpooky runs the spooky CLI in host h and returns its output and exit
// code.
func runSpooky(tb testing.TB, h *netns.Host, args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	cmd := h.Command(mustBuild(tb, "spooky"), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		tb.Fatalf("run spooky %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// mustStats returns `spooky stats eth0 --json` of host h.
func mustStats(tb testing.TB, h *netns.Host) *forwarder.Stats {
	tb.Helper()
	out, errOut, code := runSpooky(tb, h, "stats", "--json", h.Iface)
	if code != 0 {
		tb.Fatalf("spooky stats: exit %d: %s", code, errOut)
	}
	var st forwarder.Stats
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		tb.Fatalf("spooky stats --json: %v\n%s", err, out)
	}
	return &st
}

// backendPackets sums the forwarded packets of every backend slot by
// address.
func backendPackets(st *forwarder.Stats) map[netip.Addr]uint64 {
	m := map[netip.Addr]uint64{}
	for _, b := range st.Backends {
		m[b.Address] += b.Packets
	}
	return m
}

// pinnedFlows reads the flow table that the spooky process pid has
// pinned, through its root (the pins live in the load balancer host's own
// mount namespace): every CPU's flow_cache. It returns each flow's backend
// index.
func pinnedFlows(tb testing.TB, pid int) map[bpf.FlowKey]uint32 {
	tb.Helper()
	path := fmt.Sprintf("/proc/%d/root%s", pid, filepath.Join(forwarder.PinDir("", netns.HostIface), "flow_cache"))
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		tb.Fatalf("open pinned map: %v", err)
	}
	defer m.Close()
	flows := map[bpf.FlowKey]uint32{}
	err = bpf.ForEachCachedFlow(m, func(_ int, _ uint32, e bpf.FlowCacheEntry) {
		flows[e.Key] = e.State.Backend
	})
	if err != nil {
		tb.Fatalf("read flow_cache: %v", err)
	}
	return flows
}

// decapped returns how many packets the decapsulator pinned on backend i's
// eth0 has stripped of their outer header (decap_stats, reason ok).
func (x *xdpLab) decapped(tb testing.TB, i int) uint64 {
	tb.Helper()
	path := fmt.Sprintf("/proc/%d/root%s", x.procs[i].cmd.Process.Pid, filepath.Join(forwarder.DecapPinDir("", netns.HostIface), "decap_stats"))
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		tb.Fatalf("open decap_stats of %s: %v", x.Backends[i], err)
	}
	defer m.Close()
	for r := range bpf.NumDecapReasons {
		if bpf.DecapReason(r).String() != "ok" {
			continue
		}
		var perCPU []uint64
		if err := m.Lookup(uint32(r), &perCPU); err != nil {
			tb.Fatalf("read decap_stats of %s: %v", x.Backends[i], err)
		}
		var n uint64
		for _, c := range perCPU {
			n += c
		}
		return n
	}
	tb.Fatal("decap_stats has no reason named ok")
	return 0
}

// quicConfig keeps packets small enough to encapsulate and connections
// alive across a whole lab's subtests.
func quicConfig() *quic.Config {
	return &quic.Config{InitialPacketSize: 1252, KeepAlivePeriod: 2 * time.Second, MaxIdleTimeout: time.Minute}
}

// h3Conn is one HTTP/3 connection of an in-test client, on a UDP socket of
// its own in the client host.
type h3Conn struct {
	tr      *quic.Transport
	conn    *quic.Conn
	cc      *http3.ClientConn
	url     string
	backend string // X-Backend of the first response
}

// mustUDPSocket opens a UDP socket bound to local:0 in host h.
func mustUDPSocket(tb testing.TB, h *netns.Host, local netip.Addr) *net.UDPConn {
	tb.Helper()
	var udp *net.UDPConn
	if err := h.Do(func() error {
		var err error
		udp, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
		return err
	}); err != nil {
		tb.Fatalf("udp socket on %s in %s: %v", local, h, err)
	}
	return udp
}

// clientAddr is the client's address of vip's family.
func clientAddr(vip netip.AddrPort) netip.Addr {
	if vip.Addr().Is6() {
		return netns.ClientIPv6
	}
	return netns.ClientIPv4
}

// mustDialH3 opens an HTTP/3 connection from the client host to vip and
// makes one request, recording which backend answered.
func mustDialH3(tb testing.TB, h *netns.Host, vip netip.AddrPort) *h3Conn {
	tb.Helper()
	return mustDialH3From(tb, h, clientAddr(vip), vip)
}

// mustDialH3From is mustDialH3 from the address local of host h.
func mustDialH3From(tb testing.TB, h *netns.Host, local netip.Addr, vip netip.AddrPort) *h3Conn {
	tb.Helper()
	tr := &quic.Transport{Conn: mustUDPSocket(tb, h, local)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}} // self-signed backends
	conn, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(vip), tlsConf, quicConfig())
	if err != nil {
		tr.Close()
		tb.Fatalf("dial %s: %v", vip, err)
	}
	c := &h3Conn{tr: tr, conn: conn, cc: (&http3.Transport{}).NewClientConn(conn), url: fmt.Sprintf("https://%s/", vip)}
	tb.Cleanup(func() {
		_ = conn.CloseWithError(0, "")
		_ = tr.Close()
	})
	if c.backend, err = c.get(ctx); err != nil {
		tb.Fatalf("first request on a new connection to %s: %v", vip, err)
	}
	return c
}

// get makes one request and returns the X-Backend of a 200 response.
func (c *h3Conn) get(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.cc.RoundTrip(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	b := resp.Header.Get("X-Backend")
	if resp.StatusCode != http.StatusOK || string(body) != b+"\n" {
		return "", fmt.Errorf("status %d, body %q, X-Backend %q", resp.StatusCode, body, b)
	}
	return b, nil
}

// localPort is the client port the connection currently sends from.
func (c *h3Conn) localAddr() netip.AddrPort {
	return c.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// mustConnsToEveryBackend opens connections to vip until every backend
// answers on at least one, and returns one connection per backend.
func (x *xdpLab) mustConnsToEveryBackend(tb testing.TB, vip netip.AddrPort) map[string]*h3Conn {
	tb.Helper()
	conns := map[string]*h3Conn{}
	// Backend 1's share is 1/6: 60 tries miss it with probability
	// (5/6)^60 < 2e-5.
	for range 60 {
		c := mustDialH3(tb, x.Client, vip)
		if conns[c.backend] == nil {
			conns[c.backend] = c
		} else {
			_ = c.conn.CloseWithError(0, "")
		}
		if len(conns) == len(x.Backends) {
			return conns
		}
	}
	tb.Fatalf("60 connections to %s reached only %d backends", vip, len(conns))
	return nil
}

// requestLoop makes requests back to back on a set of connections, each
// expected to stay on the backend that first answered it.
type requestLoop struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ok     []atomic.Int64
	mu     sync.Mutex
	errs   []string
}

// startRequestLoop starts one goroutine per connection.
func startRequestLoop(conns []*h3Conn) *requestLoop {
	ctx, cancel := context.WithCancel(context.Background())
	l := &requestLoop{cancel: cancel, ok: make([]atomic.Int64, len(conns))}
	for i, c := range conns {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
				b, err := c.get(rctx)
				rcancel()
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					l.fail(fmt.Sprintf("connection from %s to %s: %v", c.localAddr(), c.url, err))
				case b != c.backend:
					l.fail(fmt.Sprintf("connection from %s to %s: answered by %s, first by %s", c.localAddr(), c.url, b, c.backend))
				default:
					l.ok[i].Add(1)
				}
			}
		}()
	}
	return l
}

func (l *requestLoop) fail(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, s)
}

// mustWaitRequests waits until every connection has made n more successful
// requests than when called.
func (l *requestLoop) mustWaitRequests(tb testing.TB, n int64) {
	tb.Helper()
	base := make([]int64, len(l.ok))
	for i := range l.ok {
		base[i] = l.ok[i].Load()
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := range l.ok {
		for l.ok[i].Load() < base[i]+n {
			if time.Now().After(deadline) {
				tb.Fatalf("connection %d made %d requests in 20s, want %d; failures: %v", i, l.ok[i].Load()-base[i], n, l.failures())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func (l *requestLoop) failures() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

// stop ends the loop and returns the successful requests and failures.
func (l *requestLoop) stop() (ok int64, failures []string) {
	l.cancel()
	l.wg.Wait()
	for i := range l.ok {
		ok += l.ok[i].Load()
	}
	return ok, l.failures()
}

// backendCaptures records every backend host's eth0.
type backendCaptures map[string]*netns.Capture

func (x *xdpLab) mustCaptureBackends(tb testing.TB) backendCaptures {
	tb.Helper()
	caps := backendCaptures{}
	for _, h := range x.Backends {
		c, err := h.Capture()
		if err != nil {
			tb.Fatal(err)
		}
		caps[h.Name] = c
	}
	return caps
}

// mustStopTuples stops the captures and returns, for every client address
// and port that sent to vip, the backends that received its datagrams and
// how many each received.
func (caps backendCaptures) mustStopTuples(tb testing.TB, vips ...netip.AddrPort) map[netip.AddrPort]map[string]int {
	tb.Helper()
	isVIP := map[netip.AddrPort]bool{}
	for _, v := range vips {
		isVIP[v] = true
	}
	seen := map[netip.AddrPort]map[string]int{}
	for name, c := range caps {
		frames, err := c.Stop()
		if err != nil {
			tb.Fatalf("capture on %s: %v", name, err)
		}
		for _, f := range frames {
			if f.Outgoing {
				continue
			}
			d, ok := netns.ParseUDP(decapsulated(f.Data))
			if !ok || !isVIP[d.Dst] {
				continue
			}
			if seen[d.Src] == nil {
				seen[d.Src] = map[string]int{}
			}
			seen[d.Src][name]++
		}
	}
	return seen
}

// decapsulated returns frame with an outer IPv4 (protocol 4 or 41) or IPv6
// (next header 4 or 41) header removed, as ipip forwarding adds it; other
// frames are returned as they are. Packet taps normally see frames after
// XDP decapsulated them, but this keeps the check honest either way.
func decapsulated(frame []byte) []byte {
	if len(frame) < 14 {
		return frame
	}
	var proto byte
	var hdrLen int
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case 0x0800:
		if len(frame) < 14+20 {
			return frame
		}
		proto, hdrLen = frame[14+9], int(frame[14]&0x0f)*4
	case 0x86dd:
		if len(frame) < 14+40 {
			return frame
		}
		proto, hdrLen = frame[14+6], 40
	default:
		return frame
	}
	var inner uint16
	switch proto {
	case 4:
		inner = 0x0800
	case 41:
		inner = 0x86dd
	default:
		return frame
	}
	if len(frame) < 14+hdrLen {
		return frame
	}
	out := append([]byte(nil), frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, inner)
	return append(out, frame[14+hdrLen:]...)
}

// binomialTolerance is z standard deviations of the share of n draws that
// land on an outcome of probability p.
func binomialTolerance(p float64, n int, z float64) float64 {
	return z * math.Sqrt(p*(1-p)/float64(n))
}

// clientReport is the part of spooky-client --json the tests read.
type clientReport struct {
	Requests      int            `json:"requests"`
	OK            int            `json:"ok"`
	Failed        int            `json:"failed"`
	ConnBackends  map[string]int `json:"connection_backends"`
	SwitchedConns int            `json:"switched_connections"`
	Errors        map[string]int `json:"errors"`
}

// mustRunClient runs spooky-client in the client host against vip.
func mustRunClient(tb testing.TB, h *netns.Host, vip netip.AddrPort, conns, requests int) clientReport {
	tb.Helper()
	cmd := h.Command(mustBuild(tb, "spooky-client"), "--url", fmt.Sprintf("https://%s/", vip),
		"--conns", fmt.Sprint(conns), "--requests", fmt.Sprint(requests), "--insecure", "--json", "--timeout", "10s",
		// At most 30 handshakes in flight: bursts of hundreds of 1252-octet
		// Initials could overflow the captures' socket buffers.
		"--concurrency", "30")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		tb.Fatalf("spooky-client: %v\n%s%s", err, out.String(), errOut.String())
	}
	var r clientReport
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		tb.Fatalf("spooky-client --json: %v\n%s", err, out.String())
	}
	return r
}

// mustConnsToEveryBackendOf opens connections until every backend of every
// VIP in vips holds one.
func (x *xdpLab) mustConnsToEveryBackendOf(t *testing.T, vips []netip.AddrPort) []*h3Conn {
	t.Helper()
	var conns []*h3Conn
	for _, vip := range vips {
		for _, c := range x.mustConnsToEveryBackend(t, vip) {
			conns = append(conns, c)
		}
	}
	return conns
}
