package forwarder

import (
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/test/netns"
	"github.com/spooky-lb/spooky/xsk"
)

// Encrypted configs of the slow path's benchmarks at codepoint 2: a server
// ID and nonce of 16 octets are one AES block (single pass, draft-21
// §5.4.1); fewer take the four-pass Feistel network (§5.4.2).
var (
	slowSingle = cid.Config{ID: 2, ServerIDLen: 2, NonceLen: 14, Key: rtEncrypted.Key}
	slowFour   = cid.Config{ID: 2, ServerIDLen: 2, NonceLen: 6, Key: rtEncrypted.Key}
)

// mustSlowRouter returns a slow path Router for the unit-test world whose
// VIP 0 (l2dsr) and VIP 1 (ipip) use c at codepoint 2.
func mustSlowRouter(tb testing.TB, c cid.Config) *Router {
	tb.Helper()
	d := rtDesired(tb)
	for _, ap := range []bpf.VIPKey{bpf.NewVIPKey(rtVIP), bpf.NewVIPKey(rtVIP6)} {
		v := d.VIPs[ap]
		v.Info.Cid[2] = bpf.CIDConfig{ServerIdLen: uint8(c.ServerIDLen), NonceLen: uint8(c.NonceLen),
			Flags: bpf.CIDConfigPresent | bpf.CIDConfigEncrypted}
		v.Info.Flags |= bpf.VIPSlowPath
		d.VIPs[ap] = v
	}
	dec, err := cid.NewDecoder(c)
	if err != nil {
		tb.Fatal(err)
	}
	r := newSlowPathRouter()
	r.Update(d, map[uint32]*cid.Decoder{0: dec, 1: dec})
	r.SetLB(rtLB(tb, true))
	return r
}

// slowFrames returns n short-header frames to VIP 0 (or the IPv6 ipip VIP
// 1), each with its own DCID of c for server ID 2 (backend 2; backend 5 on
// VIP 1), 60 octets of QUIC payload after the DCID.
func slowFrames(tb testing.TB, c cid.Config, n int, six bool) [][]byte {
	tb.Helper()
	sid := []byte{0, 2}
	if six {
		sid = []byte{0, 5}
	}
	e, err := cid.NewEncoder(c, sid)
	if err != nil {
		tb.Fatal(err)
	}
	out := make([][]byte, n)
	nonce := make([]byte, c.NonceLen)
	for i := range out {
		nonce[0], nonce[1], nonce[2] = byte(i), byte(i>>8), byte(i>>16)
		dcid, err := e.Encode(nil, nonce)
		if err != nil {
			tb.Fatal(err)
		}
		f := udp4(rtVIP, quicShort(dcid, 60))
		if six {
			f = testFrame{src: rtClient6, dst: rtVIP6, payload: quicShort(dcid, 60)}
		}
		out[i] = f.bytes()
	}
	return out
}

func TestSlowPathDecideDoesNotAllocate(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    cid.Config
		six  bool
	}{{"single-pass over l2dsr", slowSingle, false}, {"four-pass over ipip", slowFour, true}} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustSlowRouter(t, tc.c)
			frames := slowFrames(t, tc.c, 2000, tc.six)
			buf := make([]byte, 256+len(frames[0]))
			i := 0
			allocs := testing.AllocsPerRun(1000, func() {
				copy(buf[256:], frames[i])
				i++
				start, dec, _ := decide(r, buf, 256)
				if start < 0 || !dec.Learned || dec.Path != PathCID {
					t.Fatalf("decide: start %d, %v", start, dec)
				}
			})
			if allocs != 0 {
				t.Errorf("decide allocates %.2f times per datagram", allocs)
			}
		})
	}
}

// BenchmarkSlowPath is the slow path's work per datagram on one core: the
// Router's decision with the decryption of a DCID it has not seen, the
// frame built for the backend, and the DCID written to a real cid_cache
// in batches of 64, as a worker does (as root; without root the insert is
// left out and said so). The AF_XDP rings are not in it: see
// BenchmarkSlowPathLive.
func BenchmarkSlowPath(b *testing.B) {
	var objs *bpf.LBObjects
	if os.Geteuid() == 0 {
		var err error
		objs, err = bpf.LoadLB(&bpf.LoadOptions{CIDCacheSize: 1 << 20})
		if err != nil {
			b.Fatal(err)
		}
		defer objs.Close()
	}
	for _, tc := range []struct {
		name string
		c    cid.Config
	}{{"single-pass", slowSingle}, {"four-pass", slowFour}} {
		b.Run(tc.name, func(b *testing.B) {
			if objs == nil {
				b.Log("not root: without the cid_cache insert")
			}
			r := mustSlowRouter(b, tc.c)
			const n = 1 << 16
			frames := slowFrames(b, tc.c, n, false)
			buf := make([]byte, 256+len(frames[0]))
			var keys [slowBatch]bpf.CIDKey
			var vals [slowBatch]uint32
			k := 0
			// Time on this thread's CPU, not the wall clock: the machine
			// is shared, and the figure is for one core.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ResetTimer()
			cpu0 := threadCPU(b)
			for i := range b.N {
				if i%n == 0 && i > 0 {
					// Every DCID again: forget them, so each is decrypted.
					b.StopTimer()
					clear(r.tables.direct)
					b.StartTimer()
				}
				copy(buf[256:], frames[i%n])
				s, dec, _ := decide(r, buf, 256)
				if s < 0 || !dec.Learned {
					b.Fatalf("decide: %d %v", s, dec)
				}
				keys[k], vals[k] = dec.CIDKey, dec.Backend
				if k++; k == slowBatch {
					if objs != nil {
						if _, err := objs.CidCache.BatchUpdate(keys[:], vals[:], nil); err != nil {
							b.Fatal(err)
						}
					}
					k = 0
				}
			}
			b.ReportMetric(float64(b.N)/(threadCPU(b)-cpu0).Seconds(), "datagrams/cpu-s")
		})
	}
}

// threadCPU is the CPU time (user and system) of the calling thread.
func threadCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSlowPathTX adds the AF_XDP TX ring to BenchmarkSlowPath: each
// datagram is written into a UMEM frame (where the kernel's copy-mode
// receive would have put it), decided, built, put on the TX ring of a
// socket on a lab veth and sent with the batch's sendto (copy mode: an skb
// per frame, veth xmit), its DCID batched into cid_cache. The veth's peer
// drops every frame in XDP, so nothing downstream is measured. CPU time of
// the one thread doing all of it, system time included.
func BenchmarkSlowPathTX(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: netns lab, AF_XDP")
	}
	lab := netns.New(b, netns.Config{Backends: 1})
	drop, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}}) // XDP_DROP
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { drop.Close() })
	err = lab.Bridge.Do(func() error {
		l, err := link.AttachXDP(link.XDPOptions{Program: drop, Interface: lab.LB.PeerIndex, Flags: link.XDPDriverMode})
		if err == nil {
			b.Cleanup(func() { l.Close() })
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	objs, err := bpf.LoadLB(&bpf.LoadOptions{CIDCacheSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { objs.Close() })
	var sock *xsk.Socket
	if err := lab.LB.Do(func() (err error) { sock, err = xsk.Open(lab.LB.Index, 0, &slowPathSocket); return err }); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sock.Close() })

	for _, tc := range []struct {
		name string
		c    cid.Config
	}{{"single-pass", slowSingle}, {"four-pass", slowFour}} {
		b.Run(tc.name, func(b *testing.B) {
			r := mustSlowRouter(b, tc.c)
			const n = 1 << 16
			frames := slowFrames(b, tc.c, n, false)
			var keys [slowBatch]bpf.CIDKey
			var vals [slowBatch]uint32
			k := 0
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			b.ResetTimer()
			cpu0 := threadCPU(b)
			for i := range b.N {
				if i%n == 0 && i > 0 {
					b.StopTimer()
					clear(r.tables.direct)
					b.StartTimer()
				}
				d, ok := sock.Alloc()
				for !ok {
					if err := sock.Flush(); err != nil {
						b.Fatal(err)
					}
					d, ok = sock.Alloc()
				}
				f := frames[i%n]
				buf, _ := sock.Frame(xsk.Desc{Addr: d.Addr - 256, Len: uint32(256 + len(f))})
				copy(buf[256:], f)
				d.Len = uint32(len(f))
				s, dec, _ := decide(r, buf, 256)
				if s < 0 || !dec.Learned {
					b.Fatalf("decide: %d %v", s, dec)
				}
				out, _ := sock.Resize(d, 256-s, len(buf)-s)
				for !sock.Send(out) {
					if err := sock.Flush(); err != nil {
						b.Fatal(err)
					}
				}
				keys[k], vals[k] = dec.CIDKey, dec.Backend
				if k++; k == slowBatch {
					if _, err := objs.CidCache.BatchUpdate(keys[:], vals[:], nil); err != nil {
						b.Fatal(err)
					}
					if err := sock.Flush(); err != nil {
						b.Fatal(err)
					}
					k = 0
				}
			}
			b.ReportMetric(float64(b.N)/(threadCPU(b)-cpu0).Seconds(), "datagrams/cpu-s")
		})
	}
}
