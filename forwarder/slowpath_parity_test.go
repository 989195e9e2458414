package forwarder

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/xsk"
)

const xdpRedirect = 4

// parityDecoders returns the decoders of cfg's services with CID configs,
// by VIP id in d, as XDP.planSlowPath builds them, and turns the slow path
// on for the VIPs with an encrypted config.
func parityDecoders(tb testing.TB, cfg *config.Config, d *Desired) map[uint32]*cid.Decoder {
	tb.Helper()
	out := map[uint32]*cid.Decoder{}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		k := bpf.NewVIPKey(s.AddrPort())
		v, ok := d.VIPs[k]
		if !ok || v.Info.Mode != bpf.ModeL4 || len(s.CID) == 0 {
			continue
		}
		cfgs, err := s.CIDConfigs()
		if err != nil {
			tb.Fatal(err)
		}
		dec, err := cid.NewDecoder(cfgs...)
		if err != nil {
			tb.Fatal(err)
		}
		out[v.Info.Id] = dec
		for _, c := range cfgs {
			if c.Encrypted() {
				v.Info.Flags |= bpf.VIPSlowPath
			}
		}
		d.VIPs[k] = v
	}
	return out
}

// TestSlowPathParityWithRouter runs the parity corpus, with its encrypted
// CIDs, through XDP with an AF_XDP socket registered (so that cid_cache
// misses are redirected) and the slow path's decision and frame builder
// on what XDP redirects, filling cid_cache as the slow path does; and
// through a Router with the decoders, the reference. Every frame must be
// sent to the same backend, or not sent, by both.
func TestSlowPathParityWithRouter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading xdp_lb, AF_XDP sockets and BPF_PROG_TEST_RUN need root; run as root")
	}
	lockToOneCPU(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	planner := NewPlanner(staticHops{fail: map[netip.Addr]bool{netip.MustParseAddr("2001:db8:1::13"): true}}, log)
	cfg, d := mustParityPlan(t, planner, false)
	decoders := parityDecoders(t, cfg, d)

	objs, err := bpf.LoadLB(nil)
	if err != nil {
		t.Fatalf("load lb: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	// A socket on lo's queue 0, the queue BPF_PROG_TEST_RUN reports: it
	// makes the xsks entry exist; nothing is redirected to it for real.
	sock, err := xsk.Open(1, 0, &xsk.Options{Mode: xsk.ModeCopy, Frames: 64, RingSize: 32})
	if err != nil {
		t.Fatalf("af_xdp socket on lo: %v", err)
	}
	t.Cleanup(func() { sock.Close() })
	if err := sock.Register(objs.Xsks); err != nil {
		t.Fatal(err)
	}

	pr := &parityRun{tb: t, objs: objs, syncer: NewSyncer(objs, log), router: NewRouter(d, decoders), paths: map[string]int{}}
	lb, err := bpf.NewLBConfig(parityLBMAC, netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1"))
	if err != nil {
		t.Fatal(err)
	}
	pr.setLB(lb)
	pr.apply(d)
	pr.router.Update(d, decoders) // apply mirrors XDP alone; the reference decrypts
	slow := newSlowPathRouter()
	slow.Update(d, decoders)
	slow.SetLB(lb)

	w := newParityWorld(t, cfg, d, rand.New(rand.NewPCG(0x5370306b, 2026)))
	for _, c := range w.cached {
		pr.cacheCID(c.vipID, c.dcid, mustBackendIndex(t, d, c.backend))
	}

	const head = 256
	var redirected, learned, mismatches int
	var shown []string
	for i := range 8000 {
		frame := w.frame()
		opts := &ebpf.RunOptions{Data: bytes.Clone(frame), DataOut: make([]byte, len(frame)+256)}
		ret, err := objs.XdpLb.Run(opts)
		if err != nil {
			t.Fatal(err)
		}
		ref := pr.router.Route(frame)

		var sent bool
		var out []byte
		var verdict Verdict
		switch ret {
		case xdpRedirect:
			redirected++
			buf := append(make([]byte, head), frame...)
			start, dec, _ := decide(slow, buf, head)
			if start >= 0 {
				sent, out = true, buf[start:]
			} else {
				verdict = dec.Verdict
			}
			if dec.Learned {
				learned++
				if err := objs.CidCache.Put(dec.CIDKey, dec.Backend); err != nil {
					t.Fatal(err)
				}
			}
		case xdpTX:
			sent, out = true, opts.DataOut
		case xdpPass:
			verdict = VerdictPass
		case xdpDrop:
			verdict = VerdictDrop
		default:
			t.Fatalf("frame %d: xdp_lb returned %d", i, ret)
		}

		var problem string
		switch {
		case sent != (ref.Verdict == VerdictTX):
			problem = fmt.Sprintf("sent %v (xdp %d), router %v", sent, ret, ref)
		case sent:
			be, err := pr.backendOf(frame, out)
			if err != nil {
				problem = err.Error()
			} else if be != ref.Backend {
				problem = fmt.Sprintf("backend %d (xdp %d), router %v", be, ret, ref)
			}
		case ret != xdpRedirect && verdict != ref.Verdict:
			problem = fmt.Sprintf("verdict %v, router %v", verdict, ref)
		}
		if problem != "" {
			if mismatches++; mismatches <= 5 {
				shown = append(shown, fmt.Sprintf("frame %d: %s", i, problem))
			}
		}
	}
	t.Logf("8000 frames: %d redirected to the slow path, %d DCIDs learnt", redirected, learned)
	if mismatches > 0 {
		t.Errorf("%d frames decided differently:\n%s", mismatches, strings.Join(shown, "\n"))
	}
	if redirected < 200 || learned < 50 {
		t.Errorf("only %d frames redirected and %d DCIDs learnt: the corpus does not exercise the slow path", redirected, learned)
	}
}

// FuzzSlowPathDecide feeds any octets to the slow path as a frame XDP
// redirected, for the parity configuration's VIPs (l2dsr and ipip, with
// encrypted configs): decide must not panic, and a frame it sends must
// keep the received packet inside it.
func FuzzSlowPathDecide(f *testing.F) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	planner := NewPlanner(staticHops{fail: map[netip.Addr]bool{}}, log)
	cfg, d := mustParityPlan(f, planner, false)
	decoders := parityDecoders(f, cfg, d)
	r := newSlowPathRouter()
	r.Update(d, decoders)
	lb, _ := bpf.NewLBConfig(parityLBMAC, netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1"))
	r.SetLB(lb)
	w := newParityWorld(f, cfg, d, rand.New(rand.NewPCG(1, 2)))
	for range 200 {
		f.Add(w.frame())
	}
	const head = 256
	f.Fuzz(func(t *testing.T, frame []byte) {
		buf := append(make([]byte, head), frame...)
		start, dec, _ := decide(r, buf, head)
		if start < 0 {
			return
		}
		if dec.Verdict != VerdictTX || start > head || head-start > 40 {
			t.Fatalf("sent from %d with %v", start, dec)
		}
		l2 := ethHdrLen
		if p := uint16(frame[12])<<8 | uint16(frame[13]); p == ether8021Q || p == ether8021AD {
			l2 += vlanHdrLen
		}
		if !bytes.Equal(buf[start+l2+(head-start):], frame[l2:]) {
			t.Fatal("the packet changed on the way")
		}
	})
}
