package forwarder

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/config"
)

// parityWorld generates the parity corpus from a seeded source: what a
// QUIC load balancer's edge link carries (Initials, 0-RTT and Handshake
// packets with client-chosen DCIDs, short headers with routable CIDs,
// clients that keep sending) and what it must survive (other traffic,
// truncation, fragments, options, tags, bad headers).
type parityWorld struct {
	tb      testing.TB
	rng     *rand.Rand
	vips    []*parityVIP     // l4 VIPs XDP routes
	others  []netip.AddrPort // l7 and proxy VIPs: XDP passes them
	clients []netip.AddrPort // clients that send again and again
	cached  []cachedCID      // encrypted CIDs the forwarder has decrypted
}

type parityVIP struct {
	id       uint32
	ap       netip.AddrPort
	backends []netip.Addr
	known    []*cid.Encoder // one per config and backend with a server ID
	unknown  []*cid.Encoder // server IDs no backend has
	cached   [][]byte       // encrypted CIDs in cid_cache
}

type cachedCID struct {
	vipID   uint32
	dcid    []byte
	backend netip.Addr
}

func newParityWorld(tb testing.TB, cfg *config.Config, d *Desired, rng *rand.Rand) *parityWorld {
	tb.Helper()
	w := &parityWorld{tb: tb, rng: rng}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		dv, inXDP := d.VIPs[bpf.NewVIPKey(s.AddrPort())]
		if !inXDP || dv.Info.Mode != bpf.ModeL4 {
			w.others = append(w.others, s.AddrPort())
			continue
		}
		v := &parityVIP{id: dv.Info.Id, ap: s.AddrPort()}
		cfgs, err := s.CIDConfigs()
		if err != nil {
			tb.Fatal(err)
		}
		for _, b := range s.Backends {
			v.backends = append(v.backends, b.Address)
		}
		for _, c := range cfgs {
			for _, b := range s.Backends {
				e := mustEncoder(tb, c, b.ServerID)
				v.known = append(v.known, e)
				if !c.Encrypted() {
					continue
				}
				// Half of each backend's encrypted CIDs are cached.
				for range 3 {
					dcid := w.encode(e)
					v.cached = append(v.cached, dcid)
					w.cached = append(w.cached, cachedCID{vipID: v.id, dcid: dcid, backend: b.Address})
				}
			}
			sid := make([]byte, c.ServerIDLen)
			for i := range sid {
				sid[i] = 0xee
			}
			v.unknown = append(v.unknown, mustEncoder(tb, c, sid))
		}
		w.vips = append(w.vips, v)
	}
	for i := range 24 {
		w.clients = append(w.clients,
			netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 200, byte(i)}), uint16(20000+rng.IntN(40000))),
			netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x02, 15: byte(i)}), uint16(20000+rng.IntN(40000))))
	}
	return w
}

func mustEncoder(tb testing.TB, c cid.Config, sid []byte) *cid.Encoder {
	tb.Helper()
	e, err := cid.NewEncoder(c, sid)
	if err != nil {
		tb.Fatal(err)
	}
	return e
}

// encode returns a CID of e with a nonce from the seeded source.
func (w *parityWorld) encode(e *cid.Encoder) []byte {
	tb := w.tb
	tb.Helper()
	nonce := w.bytes(e.Config().NonceLen)
	c, err := e.Encode(nil, nonce)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func (w *parityWorld) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(w.rng.Uint32())
	}
	return b
}

// l4VIPs returns the first two l4 VIPs of a family.
func (w *parityWorld) l4VIPs(v4 bool) []*parityVIP {
	var out []*parityVIP
	for _, v := range w.vips {
		if v.ap.Addr().Is4() == v4 && len(out) < 2 {
			out = append(out, v)
		}
	}
	return out
}

func (w *parityWorld) chance(percent int) bool { return w.rng.IntN(100) < percent }

// frame returns the next frame of the corpus.
func (w *parityWorld) frame() []byte {
	r := w.rng
	var dst netip.AddrPort
	v := w.vips[r.IntN(len(w.vips))]
	switch x := r.IntN(100); {
	case x < 82:
		dst = v.ap
	case x < 88:
		dst = w.others[r.IntN(len(w.others))]
	case x < 94:
		// An address on the link that is no VIP.
		if r.IntN(2) == 0 {
			dst = netip.MustParseAddrPort("198.18.10.200:443")
		} else {
			dst = netip.MustParseAddrPort("[2001:db8:10::c8]:443")
		}
	default:
		// A VIP address on a port that is no service.
		dst = netip.AddrPortFrom(v.ap.Addr(), uint16(1+r.IntN(1024)))
	}
	v4 := dst.Addr().Is4()

	var src netip.AddrPort
	if w.chance(85) {
		for {
			src = w.clients[r.IntN(len(w.clients))]
			if src.Addr().Is4() == v4 {
				break
			}
		}
	} else if v4 {
		src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(r.IntN(256)), byte(r.IntN(256))}), uint16(1024+r.IntN(64000)))
	} else {
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x03}
		copy(a[8:], w.bytes(8))
		src = netip.AddrPortFrom(netip.AddrFrom16(a), uint16(1024+r.IntN(64000)))
	}

	f := testFrame{src: src, dst: dst, payload: w.payload(v)}
	if w.chance(8) {
		f.vlan = []uint16{ether8021Q, ether8021AD}[r.IntN(2)]
	}
	if v4 && w.chance(5) {
		f.ipOptions = make([]byte, 4*(1+r.IntN(10)))
		f.ipOptions[0] = 1 // NOP
	}
	if v4 && w.chance(3) {
		f.fragment = []uint16{ipMF, ipMF | uint16(1+r.IntN(100)), uint16(1 + r.IntN(100)), 0x4000 | ipMF}[r.IntN(4)]
	}
	if w.chance(3) {
		if v4 {
			f.proto = []uint8{1, 6, 47}[r.IntN(3)]
		} else {
			f.proto = []uint8{6, 44, 58}[r.IntN(3)] // 0 would mean UDP here; see below
		}
	}
	if w.chance(1) {
		if v4 && r.IntN(2) == 0 {
			f.ihl = uint8(r.IntN(5))
		} else {
			f.version = []uint8{0, 5, 7, 15}[r.IntN(4)]
			if f.version == 0 {
				f.version = 1
			}
		}
	}
	b := f.bytes()

	l2 := ethHdrLen
	if f.vlan != 0 {
		l2 += vlanHdrLen
	}
	switch {
	case !v4 && w.chance(1):
		b[l2+6] = 0 // IPv6 hop-by-hop options header
	case w.chance(2):
		binary.BigEndian.PutUint16(b[l2-2:], []uint16{0x0806, 0x88cc, 0x8847}[r.IntN(3)])
	case f.vlan != 0 && w.chance(10):
		// A second tag: XDP reads one.
		b = append(b[:l2:l2], append([]byte{0x81, 0x00, 0, 9}, b[l2-2:]...)...)
		binary.BigEndian.PutUint16(b[l2-2:], ether8021Q)
	}
	if w.chance(4) {
		b = b[:ethHdrLen+r.IntN(len(b)-ethHdrLen)]
	}
	if len(b) < 60 && w.chance(50) {
		// Ethernet pads short frames to 60 octets; XDP sees the padding.
		b = append(b, make([]byte, 60-len(b))...)
	}
	return b
}

// payload returns a UDP payload for VIP v (whose CIDs it may carry even
// when the frame goes elsewhere).
func (w *parityWorld) payload(v *parityVIP) []byte {
	r := w.rng
	rest := func() int {
		if w.chance(10) {
			return 1100 + r.IntN(100)
		}
		return 20 + r.IntN(80)
	}
	longType := func() byte { return []byte{longInitial, long0RTT, longHandshake}[r.IntN(3)] }
	version := func() uint32 {
		if w.chance(15) {
			return cid.Version2
		}
		return cid.Version1
	}
	routable := func(encs []*cid.Encoder) []byte {
		if len(encs) == 0 {
			return w.bytes(8 + r.IntN(13))
		}
		return w.encode(encs[r.IntN(len(encs))])
	}
	switch x := r.IntN(100); {
	case x < 22:
		// A server's CID in a short header (encrypted ones may miss
		// cid_cache).
		return quicShort(routable(v.known), rest())
	case x < 34:
		if len(v.cached) == 0 {
			return quicShort(routable(v.known), rest())
		}
		dcid := v.cached[r.IntN(len(v.cached))]
		if w.chance(25) {
			return quicLong(longHandshake, version(), dcid, rest())
		}
		return quicShort(dcid, rest())
	case x < 40:
		return quicLong(longHandshake, version(), routable(v.known), rest())
	case x < 44:
		return quicShort(routable(v.unknown), rest())
	case x < 68:
		// A client's first flight: Initial or 0-RTT with a random DCID.
		return quicLong(longType(), version(), w.bytes(8+r.IntN(13)), rest())
	case x < 76:
		return quicShort(w.bytes(8+r.IntN(13)), rest())
	case x < 82:
		// Not QUIC: the fixed bit is clear.
		b := w.bytes(r.IntN(80))
		if len(b) > 0 {
			b[0] &^= 0x40
		}
		return b
	case x < 88:
		// A routable CID too near the end for lb.c's 20-octet read.
		return quicShort(routable(v.known), r.IntN(16))
	case x < 93:
		switch r.IntN(3) {
		case 0:
			return quicLong(longType(), version(), nil, rest())
		case 1:
			// Another version may carry longer CIDs (RFC 8999 §5.1).
			return quicLong(longType(), 0x1a2a3a4a, w.bytes(21+r.IntN(40)), rest())
		default:
			b := quicLong(longType(), version(), routable(v.known), 0)
			return b[:6+r.IntN(len(b)-6)]
		}
	default:
		b := w.bytes(r.IntN(6))
		if len(b) > 0 {
			b[0] |= 0x40
		}
		return b
	}
}
