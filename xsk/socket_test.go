package xsk_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/test/netns"
	"github.com/spooky-lb/spooky/xsk"
)

// etherTest is the IEEE 802 "local experimental" EtherType: frames of it
// mean nothing to any stack in the lab.
const etherTest = 0x88b5

// redirectProgram redirects every frame to the socket of its RX queue in m,
// passing it when there is none: bpf_redirect_map(&m, ctx->rx_queue_index,
// XDP_PASS). Built from instructions, so the test needs no clang.
func redirectProgram(tb testing.TB, m *ebpf.Map) *ebpf.Program {
	tb.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xsk_test_redir",
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, 16, asm.Word), // struct xdp_md.rx_queue_index
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Imm(asm.R3, 2), // XDP_PASS
			asm.FnRedirectMap.Call(),
			asm.Return(),
		},
		License: "GPL",
	})
	if err != nil {
		tb.Fatalf("load redirect program: %v", err)
	}
	tb.Cleanup(func() { prog.Close() })
	return prog
}

func testFrame(dst, src net.HardwareAddr, tag string, i int) []byte {
	b := append(append([]byte{}, dst...), src...)
	b = binary.BigEndian.AppendUint16(b, etherTest)
	return fmt.Appendf(b, "%s %04d %s", tag, i, bytes.Repeat([]byte{'.'}, 60))
}

// mustSendRaw sends frames out of h's eth0 through an AF_PACKET socket.
func mustSendRaw(tb testing.TB, h *netns.Host, frames [][]byte) {
	tb.Helper()
	err := h.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: h.Index, Halen: 6}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("send raw frames from %s: %v", h, err)
	}
}

// TestSocketReceivesAndTransmitsOnAVeth sends frames from one lab host to
// another whose veth redirects them to an AF_XDP socket; the test reads
// them from the RX ring, turns them round in place (one of them grown at
// the front, as an encapsulation does) and transmits them through the TX
// ring; the sender must capture every one.
func TestSocketReceivesAndTransmitsOnAVeth(t *testing.T) {
	for _, mode := range []link.XDPAttachFlags{link.XDPDriverMode, link.XDPGenericMode} {
		name := map[link.XDPAttachFlags]string{link.XDPDriverMode: "native", link.XDPGenericMode: "generic"}[mode]
		t.Run("xdp in "+name+" mode, socket in copy mode", func(t *testing.T) {
			lab := netns.New(t, netns.Config{Backends: 1})
			const n = 200
			var sock *xsk.Socket
			err := lab.LB.Do(func() error {
				m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 4})
				if err != nil {
					return fmt.Errorf("xskmap: %w", err)
				}
				t.Cleanup(func() { m.Close() })
				sock, err = xsk.Open(lab.LB.Index, 0, &xsk.Options{Mode: xsk.ModeCopy, Frames: 512, RingSize: 256})
				if err != nil {
					return err
				}
				t.Cleanup(func() { sock.Close() })
				if err := sock.Register(m); err != nil {
					return err
				}
				l, err := link.AttachXDP(link.XDPOptions{Program: redirectProgram(t, m), Interface: lab.LB.Index, Flags: mode})
				if err != nil {
					return fmt.Errorf("attach: %w", err)
				}
				t.Cleanup(func() { l.Close() })
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			capture, err := lab.Client.Capture()
			if err != nil {
				t.Fatal(err)
			}
			var out [][]byte
			for i := range n {
				out = append(out, testFrame(lab.LB.MAC, lab.Client.MAC, "ping", i))
			}
			mustSendRaw(t, lab.Client, out)

			// Receive all n and send each back: "pong" in place, and
			// every tenth grown by 20 octets at the front.
			descs := make([]xsk.Desc, 64)
			got := 0
			deadline := time.Now().Add(10 * time.Second)
			for got < n && time.Now().Before(deadline) {
				if _, err := sock.Wait(100 * time.Millisecond); err != nil {
					t.Fatal(err)
				}
				k := sock.Receive(descs)
				for _, d := range descs[:k] {
					f, ok := sock.Frame(d)
					if !ok {
						t.Fatalf("rx desc %+v outside the umem", d)
					}
					if len(f) < 20 || binary.BigEndian.Uint16(f[12:]) != etherTest {
						sock.Release(d) // the lab's own traffic
						continue
					}
					var i int
					if _, err := fmt.Sscanf(string(f[14:]), "ping %d", &i); err != nil || !bytes.Equal(f, out[i]) {
						t.Fatalf("received frame %q, want one of those sent", f)
					}
					got++
					if i%10 == 0 {
						g, ok := sock.Resize(d, 20, int(d.Len)+20)
						if !ok {
							t.Fatalf("no 20 octets of headroom before %+v (headroom %d)", d, sock.Headroom(d))
						}
						d = g
						f, _ = sock.Frame(d)
					}
					copy(f, testFrame(lab.Client.MAC, lab.LB.MAC, "pong", i))
					for !sock.Send(d) {
						if err := sock.Flush(); err != nil {
							t.Fatal(err)
						}
					}
				}
				if err := sock.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			if got != n {
				t.Fatalf("received %d of %d frames", got, n)
			}

			// The client must see all n pongs; the grown ones 20 octets longer.
			seen := map[int]bool{}
			for time.Now().Before(deadline) && len(seen) < n {
				for _, fr := range capture.Frames() {
					f := fr.Data
					if fr.Outgoing || len(f) < 20 || binary.BigEndian.Uint16(f[12:]) != etherTest {
						continue
					}
					var i int
					if _, err := fmt.Sscanf(string(f[14:]), "pong %d", &i); err != nil {
						continue
					}
					want := len(out[i])
					if i%10 == 0 {
						want += 20
					}
					if len(f) != want {
						t.Errorf("pong %d is %d octets, want %d", i, len(f), want)
					}
					seen[i] = true
				}
				time.Sleep(20 * time.Millisecond)
				_ = sock.Flush()
			}
			if _, err := capture.Stop(); err != nil {
				t.Fatal(err)
			}
			st, _ := sock.Stats()
			if len(seen) != n {
				t.Fatalf("client saw %d of %d frames sent through the tx ring (socket stats %+v)", len(seen), n, st)
			}
			t.Logf("socket stats %+v", st)
		})
	}
}

func TestOpenRejectsBadOptions(t *testing.T) {
	for _, o := range []xsk.Options{{FrameSize: 1000}, {FrameSize: 1 << 20}, {RingSize: 1000}, {Frames: 1}} {
		if _, err := xsk.Open(1, 0, &o); err == nil {
			t.Errorf("Open with %+v: no error", o)
		}
	}
}

// TestSocketUnderABurstLosesOnlyWhatItCounts sends a burst of numbered
// frames at a socket that echoes them: every frame must be received once
// or counted as dropped by the kernel, never received twice.
func TestSocketUnderABurstLosesOnlyWhatItCounts(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 1})
	var sock *xsk.Socket
	err := lab.LB.Do(func() error {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 4})
		if err != nil {
			return err
		}
		t.Cleanup(func() { m.Close() })
		sock, err = xsk.Open(lab.LB.Index, 0, &xsk.Options{Mode: xsk.ModeCopy, Frames: 1024, RingSize: 256, FrameSize: 2048})
		if err != nil {
			return err
		}
		t.Cleanup(func() { sock.Close() })
		if err := sock.Register(m); err != nil {
			return err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: redirectProgram(t, m), Interface: lab.LB.Index, Flags: link.XDPDriverMode})
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	var out [][]byte
	for i := range n {
		out = append(out, testFrame(lab.LB.MAC, lab.Client.MAC, "ping", i))
	}
	done := make(chan struct{})
	go func() { defer close(done); mustSendRaw(t, lab.Client, out) }()

	seen := make([]int, n)
	descs := make([]xsk.Desc, 64)
	deadline := time.Now().Add(20 * time.Second)
	idle := 0
	for time.Now().Before(deadline) {
		ok, err := sock.Wait(50 * time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			select {
			case <-done:
				if idle++; idle > 4 {
					goto check
				}
			default:
			}
			continue
		}
		k := sock.Receive(descs)
		for _, d := range descs[:k] {
			f, _ := sock.Frame(d)
			var i int
			if len(f) > 20 && binary.BigEndian.Uint16(f[12:]) == etherTest {
				if _, err := fmt.Sscanf(string(f[14:]), "ping %d", &i); err == nil && bytes.Equal(f, out[i]) {
					seen[i]++
				}
			}
			// Echo half, drop half: both kinds of frame return.
			if i%2 == 0 {
				copy(f, testFrame(lab.Client.MAC, lab.LB.MAC, "pong", i))
				if !sock.Send(d) {
					sock.Release(d)
				}
			} else {
				sock.Release(d)
			}
		}
		if err := sock.Flush(); err != nil {
			t.Fatal(err)
		}
	}
check:
	st, err := sock.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var got, twice int
	for _, c := range seen {
		if c > 0 {
			got++
		}
		if c > 1 {
			twice++
		}
	}
	t.Logf("sent %d, received %d, stats %+v", n, got, st)
	if twice > 0 {
		t.Errorf("%d frames received more than once", twice)
	}
	if lost := uint64(n - got); lost > st.Rx_dropped+st.Rx_ring_full {
		t.Errorf("%d frames lost, the socket counts %d dropped and %d for a full ring (fill ring empty %d times)",
			lost, st.Rx_dropped, st.Rx_ring_full, st.Rx_fill_ring_empty_descs)
	}
}
