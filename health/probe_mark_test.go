package health

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/config"
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
	if n := tcp.accepts.Load() + quic.handshakes.Load(); n != 0 {
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
