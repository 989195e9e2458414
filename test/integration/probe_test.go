package integration

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/forwarder"
	"github.com/spooky-lb/spooky/test/netns"
)

// Health probes through the VIP: `spooky attach` runs, every backend holds
// the VIPs on lo and serves only them, and a socket on the load balancer
// host with a backend's probe mark must reach that backend, and only it.

func TestProbesReachTheMarkedBackendInL2DSRMode(t *testing.T) { testProbes(t, "l2dsr") }

func TestProbesReachTheMarkedBackendInIPIPMode(t *testing.T) { testProbes(t, "ipip") }

func testProbes(t *testing.T, forwarding string) {
	x := mustXDPLab(t, forwarding)
	// With TX checksum offload on (the veth default) a probe's UDP
	// checksum is left to hardware a veth does not have: the frames cross
	// the lab unfinished, as the checksum check below would show, and only
	// arrive because the receiving kernel trusts the skb's partial state.
	// With offload off the kernel finishes each checksum after tc
	// (validate_xmit_skb), as a NIC does in production.
	if err := x.LB.SetTxChecksum(false); err != nil {
		t.Fatal(err)
	}
	x.spooky.mustWaitLog(t, "msg=\"probes through the VIP are on\"", 1)
	vips := []netip.AddrPort{x.vip4, x.vip6}

	for _, vip := range vips {
		for i, name := range x.names {
			t.Run(fmt.Sprintf("a probe of %s through %s is answered by it alone", name, vip), func(t *testing.T) {
				caps := x.mustCaptureBackends(t)
				var decapped uint64
				if forwarding == "ipip" {
					decapped = x.decapped(t, i)
				}
				from, got := x.mustProbe(t, vip, x.mustProbeMark(t, vip, i))
				if got != name {
					t.Errorf("answered by %s, want %s", got, name)
				}
				seen := caps.mustStopProbe(t, from, vip)
				for other, c := range seen {
					if other != name && c.datagrams > 0 {
						t.Errorf("%s received %d of the probe's datagrams, want 0", other, c.datagrams)
					}
				}
				if c := seen[name]; c.datagrams == 0 || c.badChecksums > 0 {
					t.Errorf("%s's capture shows %d of the probe's datagrams, %d with a wrong UDP checksum; want some, all valid",
						name, c.datagrams, c.badChecksums)
				}
				if forwarding == "ipip" && x.decapped(t, i) == decapped {
					t.Errorf("%s's decapsulator stripped no outer header: the probe was not encapsulated", name)
				}
			})
		}
	}

	for _, state := range []struct {
		name  string
		flags bpf.BackendFlags
		stats string // its state in spooky stats
	}{{"unhealthy", 0, "unusable"}, {"draining", bpf.BackendDraining, "draining"}} {
		t.Run("a backend marked "+state.name+" is probed all the same", func(t *testing.T) {
			const i = 1
			vip := x.vip4
			// What the planner writes for such a backend; a refresh of the
			// daemon may rewrite it, so the probe counts only if the
			// state held from before it until after it.
			for try := 0; ; try++ {
				x.mustSetBackendFlags(t, vip, i, state.flags)
				_, got := x.mustProbe(t, vip, x.mustProbeMark(t, vip, i))
				if st := x.mustBackendState(t, vip, i); st == state.stats {
					if got != x.names[i] {
						t.Errorf("answered by %s, want %s", got, x.names[i])
					}
					break
				}
				if try == 5 {
					t.Fatalf("the daemon kept rewriting %s's state", x.names[i])
				}
			}
			x.mustSetBackendFlags(t, vip, i, bpf.BackendHealthy)
		})
	}

	t.Run("unmarked traffic from the load balancer host to a VIP is not steered", func(t *testing.T) {
		for _, vip := range vips {
			route := mustLBRoute(t, x.LB, vip.Addr(), 0)
			// The lab's main table: the VIPs are in eth0's subnets.
			if route.Table != unix.RT_TABLE_MAIN || route.Gw != nil || route.LinkIndex != x.LB.Index {
				t.Errorf("unmarked route to %s = %+v, want the main table's on-link route", vip, route)
			}
			if marked := mustLBRoute(t, x.LB, vip.Addr(), bpf.ProbeMarkBase); marked.Table != forwarder.ProbeTable(x.LB.Index) {
				t.Errorf("marked route to %s = %+v, want table %d", vip, marked, forwarder.ProbeTable(x.LB.Index))
			}
		}
		// Sent unmarked, a datagram to the VIP waits for an ARP/NDP
		// answer no backend gives (the VIP is on lo): it reaches none.
		caps := x.mustCaptureBackends(t)
		var froms []netip.AddrPort
		for _, vip := range vips {
			udp := mustLBSocket(t, x.LB, vip, 0)
			if _, err := udp.WriteToUDPAddrPort([]byte("not a probe"), vip); err != nil {
				t.Fatal(err)
			}
			froms = append(froms, udp.LocalAddr().(*net.UDPAddr).AddrPort())
			udp.Close()
		}
		// A marked datagram sent after them reaches its backend, so the
		// captures ran long enough to see the unmarked ones had they gone.
		from, _ := x.mustProbe(t, x.vip4, x.mustProbeMark(t, x.vip4, 0))
		seen := caps.mustStopTuples(t, vips...)
		for _, f := range froms {
			if len(seen[f]) != 0 {
				t.Errorf("an unmarked datagram from %s reached %v", f, seen[f])
			}
		}
		if len(seen[from]) == 0 {
			t.Error("the marked probe sent after them reached no backend")
		}
	})

	if forwarding == "l2dsr" {
		t.Run("after spooky attach is killed, spooky detach removes the rules, routes and placeholder neighbours", func(t *testing.T) {
			if err := x.spooky.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-x.spooky.exited
			if left := mustProbeLeftovers(t, x.LB); len(left) == 0 {
				t.Fatal("a killed daemon left no probe rules; the test shows nothing")
			}
			if out, errOut, code := runSpooky(t, x.LB, "detach", x.LB.Iface); code != 0 {
				t.Fatalf("spooky detach: exit %d: %s%s", code, out, errOut)
			}
			if left := mustProbeLeftovers(t, x.LB); len(left) > 0 {
				t.Errorf("left after spooky detach: %v", left)
			}
		})
		return
	}
	t.Run("stopping spooky attach removes the rules, routes and placeholder neighbours", func(t *testing.T) {
		if err := x.spooky.stop(); err != nil {
			t.Fatal(err)
		}
		if left := mustProbeLeftovers(t, x.LB); len(left) > 0 {
			t.Errorf("left after stop: %v", left)
		}
	})
}

// probeSeen is what one backend's capture shows of a probe.
type probeSeen struct {
	datagrams    int // received from the probe's socket to the VIP
	badChecksums int // of those, with a UDP checksum that does not verify
}

// mustStopProbe stops the captures and returns, by backend, the
// datagrams from from to vip each received (outer header removed, if
// any), and how many carried a wrong UDP checksum: a frame in a capture is
// what a wire would carry, so its checksum must be finished.
func (caps backendCaptures) mustStopProbe(tb testing.TB, from, vip netip.AddrPort) map[string]probeSeen {
	tb.Helper()
	seen := map[string]probeSeen{}
	for name, c := range caps {
		frames, err := c.Stop()
		if err != nil {
			tb.Fatalf("capture on %s: %v", name, err)
		}
		for _, f := range frames {
			inner := decapsulated(f.Data)
			d, ok := netns.ParseUDP(inner)
			if f.Outgoing || !ok || d.Src != from || d.Dst != vip {
				continue
			}
			s := seen[name]
			s.datagrams++
			if !udpChecksumOK(inner[14:]) {
				s.badChecksums++
			}
			seen[name] = s
		}
	}
	return seen
}

// udpChecksumOK verifies the UDP checksum of an IPv4 or IPv6 packet
// (RFC 768, RFC 8200 §8.1): the one's complement sum over the
// pseudo-header and the datagram, checksum included, must be 0xffff.
func udpChecksumOK(ip []byte) bool {
	var pseudo, udp []byte
	if ip[0]>>4 == 4 {
		ihl := int(ip[0]&0x0f) * 4
		udp = ip[ihl:binary.BigEndian.Uint16(ip[2:4])]
		pseudo = append(append([]byte{}, ip[12:20]...), 0, 17)
	} else {
		udp = ip[40 : 40+int(binary.BigEndian.Uint16(ip[4:6]))]
		pseudo = append(append([]byte{}, ip[8:40]...), 0, 0, 0, 17)
	}
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(udp)))
	var sum uint32
	for _, b := range [][]byte{pseudo, udp} {
		for i := 0; i < len(b); i += 2 {
			w := uint32(b[i]) << 8
			if i+1 < len(b) {
				w |= uint32(b[i+1])
			}
			sum += w
		}
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

// mustProbeMark returns the mark of backend i of the service on vip, made
// from the index the daemon published (spooky stats) as ProbeMark makes
// it.
func (x *xdpLab) mustProbeMark(tb testing.TB, vip netip.AddrPort, i int) uint32 {
	tb.Helper()
	index := x.mustBackendIndex(tb, vip, i)
	mark := bpf.ProbeMarkBase | index
	if x.forwarding == "ipip" {
		mark |= bpf.ProbeMarkIPIP
	}
	return mark
}

func (x *xdpLab) backendStatName(vip netip.AddrPort, i int) string {
	svc := "web4"
	if vip.Addr().Is6() {
		svc = "web6"
	}
	return svc + "/" + x.names[i]
}

func (x *xdpLab) mustBackendIndex(tb testing.TB, vip netip.AddrPort, i int) uint32 {
	tb.Helper()
	want := x.backendStatName(vip, i)
	for _, b := range mustStats(tb, x.LB).Backends {
		if b.Name == want {
			return b.Index
		}
	}
	tb.Fatalf("spooky stats has no backend %s", want)
	return 0
}

func (x *xdpLab) mustBackendState(tb testing.TB, vip netip.AddrPort, i int) string {
	tb.Helper()
	want := x.backendStatName(vip, i)
	for _, b := range mustStats(tb, x.LB).Backends {
		if b.Name == want {
			return b.State
		}
	}
	tb.Fatalf("spooky stats has no backend %s", want)
	return ""
}

// mustSetBackendFlags writes backend i's health flags into the pinned
// backends map, as the planner does for a backend the health registry
// calls unhealthy (0) or draining.
func (x *xdpLab) mustSetBackendFlags(tb testing.TB, vip netip.AddrPort, i int, flags bpf.BackendFlags) {
	tb.Helper()
	index := x.mustBackendIndex(tb, vip, i)
	path := fmt.Sprintf("/proc/%d/root%s", x.spooky.cmd.Process.Pid, filepath.Join(forwarder.PinDir("", netns.HostIface), "backends"))
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		tb.Fatalf("open pinned backends: %v", err)
	}
	defer m.Close()
	var b bpf.Backend
	if err := m.Lookup(index, &b); err != nil {
		tb.Fatal(err)
	}
	b.Flags = flags
	if err := m.Put(index, b); err != nil {
		tb.Fatal(err)
	}
}

// mustLBSocket opens a UDP socket in the load balancer host, bound to its
// address of vip's family, with SO_MARK mark (0: none).
func mustLBSocket(tb testing.TB, h *netns.Host, vip netip.AddrPort, mark uint32) *net.UDPConn {
	tb.Helper()
	local := h.IPv4
	if vip.Addr().Is6() {
		local = h.IPv6
	}
	udp := mustUDPSocket(tb, h, local)
	if mark == 0 {
		return udp
	}
	rc, err := udp.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_MARK, int(mark))
	}); err != nil {
		tb.Fatal(err)
	}
	if serr != nil {
		tb.Fatalf("set SO_MARK %#x: %v", mark, serr)
	}
	return udp
}

// mustProbe makes an HTTP/3 GET of vip from the load balancer host on a
// socket with mark, as a health checker would, and returns the socket's
// address and the X-Backend that answered.
func (x *xdpLab) mustProbe(tb testing.TB, vip netip.AddrPort, mark uint32) (netip.AddrPort, string) {
	tb.Helper()
	udp := mustLBSocket(tb, x.LB, vip, mark)
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}} // self-signed backends
	conn, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(vip), tlsConf, quicConfig())
	if err != nil {
		tb.Fatalf("probe %s with mark %#x: %v", vip, mark, err)
	}
	defer conn.CloseWithError(0, "")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://%s/healthz", vip), nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := (&http3.Transport{}).NewClientConn(conn).RoundTrip(req)
	if err != nil {
		tb.Fatalf("probe %s with mark %#x: GET /healthz: %v", vip, mark, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("probe %s with mark %#x: status %d", vip, mark, resp.StatusCode)
	}
	return udp.LocalAddr().(*net.UDPAddr).AddrPort(), resp.Header.Get("X-Backend")
}

// mustLBRoute asks the load balancer host's kernel how it routes to dst
// from a socket with mark.
func mustLBRoute(tb testing.TB, h *netns.Host, dst netip.Addr, mark uint32) netlink.Route {
	tb.Helper()
	var r netlink.Route
	err := h.Do(func() error {
		routes, err := netlink.RouteGetWithOptions(dst.AsSlice(), &netlink.RouteGetOptions{Mark: mark})
		if err != nil {
			return err
		}
		r = routes[0]
		return nil
	})
	if err != nil {
		tb.Fatalf("route get %s mark %#x: %v", dst, mark, err)
	}
	return r
}

// mustProbeLeftovers lists the probe rules, probe table routes and
// placeholder neighbours in host h.
func mustProbeLeftovers(tb testing.TB, h *netns.Host) []string {
	tb.Helper()
	var left []string
	err := h.Do(func() error {
		for _, f := range []int{unix.AF_INET, unix.AF_INET6} {
			rules, err := netlink.RuleList(f)
			if err != nil {
				return err
			}
			for _, r := range rules {
				if r.Priority == forwarder.ProbeRulePriority {
					left = append(left, r.String())
				}
			}
			routes, err := netlink.RouteListFiltered(f, &netlink.Route{Table: forwarder.ProbeTable(h.Index)}, netlink.RT_FILTER_TABLE)
			if err != nil {
				return err
			}
			for _, r := range routes {
				left = append(left, r.String())
			}
			neighs, err := netlink.NeighList(h.Index, f)
			if err != nil {
				return err
			}
			for _, n := range neighs {
				ip, _ := netip.AddrFromSlice(n.IP)
				if ip = ip.Unmap(); ip == forwarder.ProbeNextHopIPv4 || ip == forwarder.ProbeNextHopIPv6 {
					left = append(left, "neighbour "+n.String())
				}
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return left
}
