package forwarder

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
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
	"github.com/spooky-lb/spooky/health"
)

// frameDatagram returns the UDP datagram in frame as the routing decision
// sees it, if lb.c would decide it by its addresses and payload (an IPv4 or
// IPv6 UDP packet, not a fragment, with a whole UDP header): the payload
// runs to the end of the frame, as lb.c reads it.
func frameDatagram(frame []byte) (src, dst netip.AddrPort, payload []byte, ok bool) {
	if len(frame) < ethHdrLen {
		return
	}
	proto := binary.BigEndian.Uint16(frame[12:])
	l2 := ethHdrLen
	if proto == ether8021Q || proto == ether8021AD {
		if len(frame) < ethHdrLen+vlanHdrLen {
			return
		}
		proto = binary.BigEndian.Uint16(frame[16:])
		l2 += vlanHdrLen
	}
	ip := frame[l2:]
	var udp int
	var sa, da netip.Addr
	switch proto {
	case etherIPv4:
		if len(ip) < ipv4HdrLen || ip[0]>>4 != 4 || ip[0]&0x0f < 5 || ip[9] != protoUDP ||
			binary.BigEndian.Uint16(ip[6:])&(ipMF|ipOffset) != 0 {
			return
		}
		udp = l2 + int(ip[0]&0x0f)*4
		sa, da = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	case etherIPv6:
		if len(ip) < ipv6HdrLen || ip[0]>>4 != 6 || ip[6] != protoUDP {
			return
		}
		udp = l2 + ipv6HdrLen
		sa, da = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	default:
		return
	}
	if len(frame) < udp+udpHdrLen {
		return
	}
	src = netip.AddrPortFrom(sa, binary.BigEndian.Uint16(frame[udp:]))
	dst = netip.AddrPortFrom(da, binary.BigEndian.Uint16(frame[udp+2:]))
	return src, dst, frame[udp+udpHdrLen:], true
}

// TestProxyDecisionParityWithXDP runs the parity corpus through lb.c
// (BPF_PROG_TEST_RUN) and through the proxy's decision (proxyBackend on a
// Router of its own, given the same plan, CID cache and flow entries):
// every datagram that XDP sends to a backend the proxy sends to the same
// one, and every datagram XDP drops or passes the proxy does not forward.
func TestProxyDecisionParityWithXDP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading xdp_lb and BPF_PROG_TEST_RUN need root (CAP_BPF, CAP_NET_ADMIN); run as root")
	}
	lockToOneCPU(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hops := staticHops{fail: map[netip.Addr]bool{netip.MustParseAddr("2001:db8:1::13"): true}}
	planner := NewPlanner(hops, log)
	reg := health.NewRegistry(nil)
	reg.Report(health.Backend("web4", "c"), health.Operator, health.Draining, "parity test")
	planner.SetHealth(reg)
	cfg, d := mustParityPlan(t, planner, false)

	objs, err := bpf.LoadLB(nil)
	if err != nil {
		t.Fatalf("load lb: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	pr := &parityRun{tb: t, objs: objs, syncer: NewSyncer(objs, log), router: NewRouter(d, nil), paths: map[string]int{}}
	proxy := NewRouter(d, nil)
	lb, err := bpf.NewLBConfig(parityLBMAC, netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1"))
	if err != nil {
		t.Fatal(err)
	}
	setLB := func() { pr.setLB(lb); proxy.SetLB(lb) }
	apply := func(d *Desired) { pr.apply(d); proxy.Update(d, nil) }
	setLB()
	apply(d)

	rng := rand.New(rand.NewPCG(0x5370306b, 2025))
	w := newParityWorld(t, cfg, d, rng)
	for _, c := range w.cached {
		idx := mustBackendIndex(t, d, c.backend)
		pr.cacheCID(c.vipID, c.dcid, idx)
		if err := proxy.CacheCID(c.vipID, c.dcid, idx); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range w.clients[:8] {
		v := w.l4VIPs(c.Addr().Is4())[i%2]
		idx := mustBackendIndex(t, d, v.backends[i%len(v.backends)])
		pr.putFlow(v.id, c, idx)
		proxy.tables.recordFlow(bpf.NewFlowKey(v.id, c), idx)
	}

	var datagrams, forwarded, mismatches int
	var shown []string
	run := func(frame []byte) {
		t.Helper()
		opts := &ebpf.RunOptions{Data: bytes.Clone(frame), DataOut: make([]byte, len(frame)+256)}
		ret, err := objs.XdpLb.Run(opts)
		if err != nil {
			t.Fatalf("run xdp_lb: %v", err)
		}
		src, dst, payload, ok := frameDatagram(frame)
		if !ok {
			return // never a datagram on a socket; XDP's state is untouched by it too
		}
		datagrams++
		backend, fwd := proxyBackend(proxy, src, dst, payload)
		var problem string
		switch {
		case ret == xdpTX && !fwd:
			problem = "xdp sent it to a backend, the proxy drops it"
		case ret == xdpTX:
			forwarded++
			xb, err := pr.backendOf(frame, opts.DataOut)
			if err != nil {
				problem = err.Error()
			} else if xb != backend {
				problem = fmt.Sprintf("xdp chose backend %d, the proxy %d", xb, backend)
			}
		case fwd:
			problem = fmt.Sprintf("xdp did not send it to a backend (action %d), the proxy sends it to %d", ret, backend)
		}
		if problem != "" {
			if mismatches++; len(shown) < 5 {
				shown = append(shown, problem+"\n"+hex.Dump(frame))
			}
		}
	}
	for range 8000 {
		run(w.frame())
	}
	hops.fail[netip.MustParseAddr("198.18.1.1")] = true
	reg.Report(health.Backend("enc6", "a"), health.Active, health.Unhealthy, "parity test")
	_, d2 := mustParityPlan(t, planner, true)
	apply(d2)
	for range 3000 {
		run(w.frame())
	}
	lb.Addr6 = [16]byte{}
	setLB()
	for range 1500 {
		run(w.frame())
	}
	t.Logf("%d datagrams, %d sent to a backend by both", datagrams, forwarded)
	if mismatches > 0 {
		t.Errorf("%d of %d datagrams decided differently; the first:\n%s", mismatches, datagrams, strings.Join(shown, "\n"))
	}
	if forwarded < 5000 {
		t.Errorf("only %d datagrams were forwarded: the corpus does not exercise the proxy", forwarded)
	}
}
