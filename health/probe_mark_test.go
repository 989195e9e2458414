package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/test/netns"
)

func skipUnlessRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("setting SO_MARK needs CAP_NET_ADMIN: run as root (CI does)")
	}
}

// socketMark reads SO_MARK back from a socket.
func socketMark(tb testing.TB, sc syscall.Conn) uint32 {
	tb.Helper()
	rc, err := sc.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var mark int
	var gerr error
	if err := rc.Control(func(fd uintptr) { mark, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) }); err != nil {
		tb.Fatal(err)
	}
	if gerr != nil {
		tb.Fatalf("getsockopt SO_MARK: %v", gerr)
	}
	return uint32(mark)
}

func TestMarkControl(t *testing.T) {
	t.Run("mark 0 sets nothing", func(t *testing.T) {
		if markControl(0) != nil {
			t.Fatal("markControl(0) returned a Control func")
		}
	})
	skipUnlessRoot(t)
	srv := mustTCPServer(t)
	for _, mark := range []uint32{0x2a, 0x80000001} { // the top bit must survive the int the kernel reads
		t.Run(fmt.Sprintf("a dialled TCP socket carries mark %#x", mark), func(t *testing.T) {
			d := net.Dialer{Control: markControl(mark)}
			c, err := d.Dial("tcp", srv.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := socketMark(t, c.(*net.TCPConn)); got != mark {
				t.Fatalf("SO_MARK = %#x, want %#x", got, mark)
			}
		})
		t.Run(fmt.Sprintf("a UDP socket for QUIC carries mark %#x", mark), func(t *testing.T) {
			lc := net.ListenConfig{Control: markControl(mark)}
			pc, err := lc.ListenPacket(context.Background(), "udp4", ":0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			if got := socketMark(t, pc.(*net.UDPConn)); got != mark {
				t.Fatalf("SO_MARK = %#x, want %#x", got, mark)
			}
		})
	}
}

// TestMarkWithoutCapability drops CAP_NET_ADMIN and CAP_NET_RAW from one
// thread (capabilities are per thread in Linux) and probes from it. An
// https or http probe cannot be tested so: net/http dials on a goroutine
// of its own, on another thread; TestFailure covers how its error is read.
func TestMarkWithoutCapability(t *testing.T) {
	skipUnlessRoot(t)
	mustNotLeak(t)
	tcp := mustTCPServer(t)
	quic := mustH3Server(t, mustCert(t, "backend.example.test"), newHandler())

	type result struct {
		name string
		o    outcome
		err  error
	}
	results := make(chan result)
	go func() {
		defer close(results)
		// Never unlocked: the thread, with its reduced capabilities, ends
		// with this goroutine instead of running others.
		runtime.LockOSThread()
		if err := dropThreadCaps(unix.CAP_NET_ADMIN, unix.CAP_NET_RAW); err != nil {
			results <- result{err: err}
			return
		}
		for _, p := range []Probe{
			{Type: config.CheckTCP, Addr: tcp.addr, Mark: 7, Timeout: time.Second},
			{Type: config.CheckQUIC, Addr: quic.addr, Mark: 7, Timeout: time.Second},
			{Type: config.CheckHTTP3, Addr: quic.addr, Mark: 7, Timeout: time.Second},
		} {
			results <- result{name: string(p.Type), o: probeOnce(t, p)}
		}
	}()
	for r := range results {
		if r.err != nil {
			t.Fatalf("drop capabilities: %v", r.err)
		}
		want := "set socket mark 0x7: operation not permitted (needs CAP_NET_ADMIN or CAP_NET_RAW)"
		if r.o.ok || !r.o.local || r.o.detail != want {
			t.Errorf("%s probe = %+v, want a local failure %q", r.name, r.o, want)
		}
	}
	if n := tcp.accepts.Load() + quic.accepted.Load(); n != 0 {
		t.Errorf("the servers saw %d connections; an unmarked probe must not be sent", n)
	}
}

// dropThreadCaps removes caps from the calling thread's effective set.
func dropThreadCaps(caps ...int) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	for _, c := range caps {
		data[c/32].Effective &^= 1 << (c % 32)
	}
	return unix.Capset(&hdr, &data[0])
}

// TestMarkSteersAProbeOfTheVIP builds a lab in which two direct-server-
// return backends hold the VIP and the load-balancer host routes the VIP
// by socket mark (ip rule fwmark → a table whose route to the VIP goes via
// one backend), and probes the VIP from the load-balancer host: each mark
// reaches its own backend, and an unmarked probe reaches none.
func TestMarkSteersAProbeOfTheVIP(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 2})
	vip := netns.VIPv4
	var certs []testCert
	for i, b := range lab.Backends {
		name := fmt.Sprintf("backend-%d", i)
		certs = append(certs, mustCert(t, name+".example.test"))
		if err := b.AddVIP(vip); err != nil {
			t.Fatal(err)
		}
		mustServeInNamespace(t, b, vip, name, certs[i])
	}
	if err := lab.LB.Do(func() error {
		for i := range lab.Backends {
			rule := netlink.NewRule()
			rule.Mark, rule.Table, rule.Priority = uint32(i+1), 100+i, 100+i
			if err := netlink.RuleAdd(rule); err != nil {
				return fmt.Errorf("add rule: %w", err)
			}
			route := &netlink.Route{LinkIndex: lab.LB.Index, Dst: &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(32, 32)},
				Gw: netns.BackendIPv4(i).AsSlice(), Table: 100 + i}
			if err := netlink.RouteAdd(route); err != nil {
				return fmt.Errorf("add route: %w", err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	quicTo := func(mark uint32, backend int) Probe {
		return Probe{Type: config.CheckQUIC, Addr: vip.String() + ":443", Mark: mark, Timeout: time.Second,
			TLS: ProbeTLS{ServerName: fmt.Sprintf("backend-%d.example.test", backend), CAFile: certs[backend].certFile, Verify: true}}
	}
	http3Body := func(mark uint32, body string) Probe {
		return Probe{Type: config.CheckHTTP3, Addr: vip.String() + ":443", Mark: mark, Body: body, Timeout: time.Second}
	}
	tcpTo := func(mark uint32) Probe {
		return Probe{Type: config.CheckTCP, Addr: vip.String() + ":80", Mark: mark, Timeout: time.Second}
	}
	probeFromLB := func(p Probe) outcome {
		var o outcome
		// The probe's socket is made inside the load balancer's namespace
		// (net/http dials on goroutines of its own, so the http types
		// cannot be tested so).
		if err := lab.LB.Do(func() error { o = probeOnce(t, p); return nil }); err != nil {
			t.Fatal(err)
		}
		return o
	}
	// A fresh lab sometimes loses its first packets (the first ARP request,
	// which the kernel repeats a second later), so wait until each mark
	// reaches its backend's kernel before judging timeouts.
	for mark := uint32(1); mark <= 2; mark++ {
		p := tcpTo(mark)
		p.Timeout = 100 * time.Millisecond
		waitFor(t, fmt.Sprintf("mark %d reaches a backend", mark), func() bool {
			return !matches(probeFromLB(p).detail, "timeout")
		})
	}
	for _, tc := range []struct {
		name  string
		probe Probe
		ok    bool
		want  []string
	}{
		{"a tcp probe with mark 2 connects to backend 1, which listens", tcpTo(2), true, []string{"connected"}},
		{"a tcp probe with mark 1 is refused by backend 0, which does not", tcpTo(1), false, []string{"connect: connection refused"}},
		{"mark 1 reaches backend 0, whose certificate verifies", quicTo(1, 0), true, []string{"handshake"}},
		{"mark 2 reaches backend 1, not backend 0", quicTo(2, 0), false, []string{"handshake: ", "valid for backend-1.example.test, not backend-0"}},
		{"mark 2 reaches backend 1, whose certificate verifies", quicTo(2, 1), true, []string{"handshake"}},
		{"an unmarked probe reaches no backend", quicTo(0, 0), false, []string{"timeout after 1s"}},
		{"an http3 probe with mark 2 is answered by backend 1", http3Body(2, "^backend-1$"), true, []string{"200"}},
		{"an http3 probe with mark 1 is answered by backend 0", http3Body(1, "^backend-1$"), false, []string{"body does not match"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := probeFromLB(tc.probe)
			if o.ok != tc.ok || o.local || !matches(o.detail, tc.want...) {
				t.Fatalf("probe = %+v, want ok %v and a reason with %q", o, tc.ok, tc.want)
			}
		})
	}
}

// mustServeInNamespace runs, on h, an HTTP/3 server on vip:443 that
// answers every request with name and, on backend-1 only, a TCP listener
// on vip:80.
func mustServeInNamespace(tb testing.TB, h *netns.Host, vip netip.Addr, name string, cert testCert) {
	tb.Helper()
	var pc net.PacketConn
	var ln net.Listener
	if err := h.Do(func() error {
		var err error
		if pc, err = net.ListenPacket("udp4", netip.AddrPortFrom(vip, 443).String()); err != nil {
			return err
		}
		if name == "backend-1" {
			ln, err = net.Listen("tcp4", netip.AddrPortFrom(vip, 80).String())
		}
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc}
	qln, err := tr.Listen(http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert.tls}}), &quic.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http3.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, name) })}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.ServeListener(qln) })
	if ln != nil {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		})
	}
	tb.Cleanup(func() {
		srv.Close()
		qln.Close()
		tr.Close()
		pc.Close()
		if ln != nil {
			ln.Close()
		}
		wg.Wait()
	})
}
