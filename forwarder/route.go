package forwarder

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/cid"
)

// This file is the Go twin of bpf/lb.c (DESIGN.md "Routing decision (one
// model, two implementations)"). Every branch below names the lb.c function
// it mirrors; a change to one side must be made to the other, and
// TestParityWithXDP runs one corpus through both to hold them equal.

// Verdict is what happens to a packet, as the XDP action lb.c returns.
type Verdict uint8

// Verdicts.
const (
	// VerdictPass hands the packet to the kernel stack (XDP_PASS).
	VerdictPass Verdict = iota
	// VerdictDrop discards it (XDP_DROP).
	VerdictDrop
	// VerdictTX sends it to Decision.Backend (XDP_TX).
	VerdictTX
)

var verdictNames = [...]string{"pass", "drop", "tx"}

// String returns "pass", "drop" or "tx".
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Path is the routing step that chose a backend (enum route_path in lb.c).
type Path uint8

// Paths, in the order of draft-ietf-quic-load-balancers-21 §4.2.
const (
	// PathNone: no backend was chosen.
	PathNone Path = iota
	// PathCID: a plaintext server ID (or, with a Decoder, a decrypted one)
	// named the backend.
	PathCID
	// PathCIDCache: the DCID of an encrypted config was in the CID cache.
	PathCIDCache
	// PathFlow: the client's flow table entry named the backend.
	PathFlow
	// PathMaglev: the VIP's Maglev table did; a flow entry was inserted.
	PathMaglev
)

var pathNames = [...]string{"none", "cid", "cid_cache", "flow", "maglev"}

// String returns the path's name in metric form, e.g. "cid_cache".
func (p Path) String() string {
	if int(p) < len(pathNames) {
		return pathNames[p]
	}
	return fmt.Sprintf("path(%d)", uint8(p))
}

// ReasonSet is a set of reasons, bit r for bpf.Reason r.
type ReasonSet uint32

// Has reports whether r is in the set.
func (s ReasonSet) Has(r bpf.Reason) bool { return s&(1<<r) != 0 }

func (s *ReasonSet) add(r bpf.Reason) { *s |= 1 << r }

// Decision is the routing decision for one packet.
type Decision struct {
	// Verdict is what lb.c returns for the packet.
	Verdict Verdict
	// Path is the step that chose Backend; PathNone if none did. A backend
	// may be chosen and the packet still passed (ipip without an outer
	// source address of the backend's family).
	Path Path
	// Backend is the chosen backend index, when Path is not PathNone.
	Backend uint32
	// Reason is the reason_stats counter of the verdict (REASON_TX for
	// VerdictTX, a PASS_ or DROP_ reason otherwise).
	Reason bpf.Reason
	// Events are the other reason_stats counters lb.c increments on the
	// way (ip_options, not_quic, cid_*, flow_*), at most once each.
	Events ReasonSet
	// Learned reports that the Router decrypted the DCID and cached it
	// (only with a Decoder); CIDKey -> Backend belongs in the XDP cid_cache
	// too, so the connection's later packets stay in XDP (DESIGN.md
	// "Encrypted CIDs").
	Learned bool
	// CIDKey is the cid_cache key of the DCID, when Learned.
	CIDKey bpf.CIDKey
}

// String describes d for logs, e.g. "tx to backend 2 by cid (tx)".
func (d Decision) String() string {
	var b strings.Builder
	b.WriteString(d.Verdict.String())
	if d.Path != PathNone {
		fmt.Fprintf(&b, " to backend %d by %v", d.Backend, d.Path)
	}
	fmt.Fprintf(&b, " (%v", d.Reason)
	for ev := uint32(d.Events); ev != 0; ev &= ev - 1 {
		fmt.Fprintf(&b, ", %v", bpf.Reason(bits.TrailingZeros32(ev)))
	}
	b.WriteString(")")
	if d.Learned {
		fmt.Fprintf(&b, " learned cid %x", d.CIDKey.Cid[:d.CIDKey.Len])
	}
	return b.String()
}

// Router makes the routing decision of lb.c in Go, for the userspace
// forwarder and for the parity test. It holds an immutable snapshot of a
// Desired state plus its own flow table and CID cache, which evolve with
// the packets it routes exactly as one CPU's flow_cache and the cid_cache
// map do in XDP. It is safe for concurrent use.
type Router struct {
	// behindXDP: the Router is the slow path, deciding what XDP
	// redirected to it, not a mirror of XDP without sockets.
	behindXDP bool
	state     atomic.Pointer[routeState]
	tables    routeTables
	counts    [bpf.NumReasons]atomic.Uint64
}

// routeState is what the maps that Go writes hold: vips, backends,
// server_ids, the Maglev tables, config. Never modified once published.
type routeState struct {
	vips      map[bpf.VIPKey]*routeVIP
	backends  []bpf.Backend // index -> value; missing = empty slot
	serverIDs map[bpf.ServerIDKey]uint32
	lb        bpf.LBConfig
}

type routeVIP struct {
	info  bpf.VIPInfo
	table []uint32
	// decoder decrypts encrypted CIDs that miss the cache; nil mirrors
	// XDP, which cannot.
	decoder *cid.Decoder
}

// NewRouter returns a Router for d. decoders, by VIP id, enable the slow
// path XDP lacks: an encrypted CID that misses the CID cache is decrypted,
// routed by its server ID and cached (Decision.Learned). With nil decoders
// the Router mirrors XDP exactly: such a packet falls through to the flow
// table and Maglev, or is passed if the VIP has VIPCIDMissPass. The load
// balancer config (SetLB) starts zero, as the XDP config map does.
func NewRouter(d *Desired, decoders map[uint32]*cid.Decoder) *Router {
	r := &Router{}
	r.tables.init(65536)
	r.state.Store(newRouteState(d, decoders, bpf.LBConfig{}))
	return r
}

func newRouteState(d *Desired, decoders map[uint32]*cid.Decoder, lb bpf.LBConfig) *routeState {
	st := &routeState{
		vips:      make(map[bpf.VIPKey]*routeVIP, len(d.VIPs)),
		serverIDs: make(map[bpf.ServerIDKey]uint32, len(d.ServerIDs)),
		lb:        lb,
	}
	for k, v := range d.VIPs {
		info := v.Info
		// As the Syncer does: no table, no Maglev size.
		if v.Table == nil {
			info.MaglevSize = 0
		}
		st.vips[k] = &routeVIP{info: info, table: v.Table, decoder: decoders[info.Id]}
	}
	n := 0
	for i := range d.Backends {
		if i < bpf.MaxBackends && int(i)+1 > n {
			n = int(i) + 1
		}
	}
	st.backends = make([]bpf.Backend, n)
	for i, b := range d.Backends {
		if i < bpf.MaxBackends {
			st.backends[i] = b
		}
	}
	for k, v := range d.ServerIDs {
		st.serverIDs[k] = v
	}
	return st
}

// Update switches the Router to d, as Syncer.Apply does the maps: flows
// and cached CIDs that point at the freed backends of d are forgotten, so
// a backend that takes a freed index later does not inherit them.
func (r *Router) Update(d *Desired, decoders map[uint32]*cid.Decoder) {
	for {
		old := r.state.Load()
		if r.state.CompareAndSwap(old, newRouteState(d, decoders, old.lb)) {
			break
		}
	}
	r.tables.forget(d.Freed)
}

// SetLB sets the load balancer's own addresses, as Syncer.SetLB does.
// Only whether an outer source of each family exists matters here: ipip
// to a backend of a family without one is passed (REASON_PASS_NO_ENCAP_SOURCE).
func (r *Router) SetLB(c bpf.LBConfig) {
	for {
		old := r.state.Load()
		st := *old
		st.lb = c
		if r.state.CompareAndSwap(old, &st) {
			return
		}
	}
}

// CacheCID records that dcid, a whole connection ID of an encrypted config
// of VIP vipID, belongs to backend, as the forwarder does in cid_cache.
func (r *Router) CacheCID(vipID uint32, dcid []byte, backend uint32) error {
	k, err := bpf.NewCIDKey(vipID, dcid)
	if err != nil {
		return fmt.Errorf("cache cid of vip %d: %w", vipID, err)
	}
	r.tables.putCID(k, backend)
	return nil
}

// ReasonCounts returns how often each reason was counted, as reason_stats
// holds them (summed over CPUs) for the packets this Router routed.
func (r *Router) ReasonCounts() [bpf.NumReasons]uint64 {
	var out [bpf.NumReasons]uint64
	for i := range out {
		out[i] = r.counts[i].Load()
	}
	return out
}

// Flows returns the number of flows in the Router's flow table, the
// mirror of one CPU's flow_cache.
func (r *Router) Flows() int { return r.tables.flowCount() }

func (r *Router) record(d Decision) Decision {
	r.counts[d.Reason].Add(1)
	for ev := uint32(d.Events); ev != 0; ev &= ev - 1 {
		r.counts[bits.TrailingZeros32(ev)].Add(1)
	}
	return d
}

// Ethernet, IP and UDP numbers (parse.h, linux/if_ether.h, linux/in.h).
const (
	ethHdrLen   = 14
	vlanHdrLen  = 4
	ipv4HdrLen  = 20
	ipv6HdrLen  = 40
	udpHdrLen   = 8
	etherIPv4   = 0x0800
	etherIPv6   = 0x86dd
	ether8021Q  = 0x8100
	ether8021AD = 0x88a8
	protoUDP    = 17
	ipMF        = 0x2000
	ipOffset    = 0x1fff
)

// datagram is what parsing learnt: the UDP 4-tuple (addresses as in keys:
// 16 octets, IPv4 in 0..3).
type datagram struct {
	family   bpf.Family
	src, dst [16]byte
	sport    uint16
	dport    uint16
}

// Route decides frame, an Ethernet frame exactly as the XDP program sees it
// (data to data_end: the UDP payload runs to the end of the frame, padding
// included, as in lb.c). It does not allocate, except when the flow table
// or CID cache grows.
func (r *Router) Route(frame []byte) Decision { return r.routeFrame(frame, nil) }

// routeTo is where a decision was made: the state and VIP it used, for the
// slow path, which builds the frame the decision sends.
type routeTo struct {
	st  *routeState
	vip *routeVIP
}

// routeFrame is Route, telling to (if not nil) the state and VIP it used.
func (r *Router) routeFrame(frame []byte, to *routeTo) Decision {
	var ev ReasonSet
	verdict := func(reason bpf.Reason, v Verdict) Decision {
		return r.record(Decision{Verdict: v, Reason: reason, Events: ev})
	}

	// parse_l2: Ethernet and at most one 802.1Q/802.1ad tag.
	if len(frame) < ethHdrLen {
		return verdict(reasonDropTruncated, VerdictDrop)
	}
	proto := binary.BigEndian.Uint16(frame[12:])
	l2 := ethHdrLen
	if proto == ether8021Q || proto == ether8021AD {
		if len(frame) < ethHdrLen+vlanHdrLen {
			return verdict(reasonDropTruncated, VerdictDrop)
		}
		proto = binary.BigEndian.Uint16(frame[16:])
		l2 += vlanHdrLen
	}

	var p datagram
	var udp int
	switch proto {
	case etherIPv4:
		ip := frame[l2:]
		if len(ip) < ipv4HdrLen {
			return verdict(reasonDropTruncated, VerdictDrop)
		}
		ihl := int(ip[0] & 0x0f)
		if ip[0]>>4 != 4 || ihl < 5 {
			return verdict(reasonDropBadIP, VerdictDrop)
		}
		if ip[9] != protoUDP {
			return verdict(reasonPassNonUDP, VerdictPass)
		}
		// Only the first fragment has the UDP header; the kernel
		// reassembles, so every fragment goes to it.
		if binary.BigEndian.Uint16(ip[6:])&(ipMF|ipOffset) != 0 {
			return verdict(reasonPassFragment, VerdictPass)
		}
		udp = l2 + ihl*4
		if len(frame) < udp+udpHdrLen {
			return verdict(reasonDropTruncated, VerdictDrop)
		}
		if ihl > 5 {
			ev.add(reasonIPOptions)
		}
		p.family = bpf.FamilyIPv4
		copy(p.src[:4], ip[12:16])
		copy(p.dst[:4], ip[16:20])
	case etherIPv6:
		ip := frame[l2:]
		if len(ip) < ipv6HdrLen {
			return verdict(reasonDropTruncated, VerdictDrop)
		}
		if ip[0]>>4 != 6 {
			return verdict(reasonDropBadIP, VerdictDrop)
		}
		// No extension headers are walked (lb.c leaves them to the kernel).
		if ip[6] != protoUDP {
			return verdict(reasonPassNonUDP, VerdictPass)
		}
		udp = l2 + ipv6HdrLen
		if len(frame) < udp+udpHdrLen {
			return verdict(reasonDropTruncated, VerdictDrop)
		}
		p.family = bpf.FamilyIPv6
		copy(p.src[:], ip[8:24])
		copy(p.dst[:], ip[24:40])
	default:
		return verdict(reasonPassNotIP, VerdictPass)
	}
	p.sport = binary.BigEndian.Uint16(frame[udp:])
	p.dport = binary.BigEndian.Uint16(frame[udp+2:])
	return r.route(&p, frame[udp+udpHdrLen:], ev, to)
}

// RouteDatagram decides a UDP datagram received on a socket: src is the
// client, dst the address it was sent to (the VIP, e.g. from IP_PKTINFO),
// payload the UDP payload. IPv4-mapped IPv6 addresses count as IPv4.
// lb.c reads the payload up to the end of the frame, so a frame with
// Ethernet padding may be decided differently by XDP than its datagram
// here when the padding makes up the 20 octets a CID read needs; real
// QUIC packets are far longer than that.
func (r *Router) RouteDatagram(src, dst netip.AddrPort, payload []byte) Decision {
	var p datagram
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	switch {
	case da.Is4() && sa.Is4():
		p.family = bpf.FamilyIPv4
		s, d := sa.As4(), da.As4()
		copy(p.src[:4], s[:])
		copy(p.dst[:4], d[:])
	case da.Is6() && sa.Is6():
		p.family = bpf.FamilyIPv6
		p.src, p.dst = sa.As16(), da.As16()
	default:
		// Mixed or invalid families: no VIP can match.
		return r.record(Decision{Verdict: VerdictPass, Reason: reasonPassNotVIP})
	}
	p.sport, p.dport = src.Port(), dst.Port()
	return r.route(&p, payload, 0, nil)
}

// quicDCID is struct dcid of lb.c: where the DCID starts in the payload
// and, for long headers, its length.
type quicDCID struct {
	off    int
	len    int
	isLong bool
}

// parseQUIC mirrors parse_quic: false for "not QUIC" (no fixed bit, RFC
// 9000 §17.2/§17.3, or too short for the invariant fields, RFC 8999 §5).
func parseQUIC(q []byte) (quicDCID, bool) {
	if len(q) < 1 || q[0]&0x40 == 0 {
		return quicDCID{}, false
	}
	if q[0]&0x80 != 0 {
		// Long header: first octet, version (4), DCID length (1), DCID.
		if len(q) < 6 {
			return quicDCID{}, false
		}
		d := quicDCID{off: 6, len: int(q[5]), isLong: true}
		if d.len <= bpf.MaxCIDLen && d.off+d.len > len(q) {
			return quicDCID{}, false
		}
		return d, true
	}
	// Short header: the DCID's length is known only from the CID config
	// (RFC 8999 §5.2).
	if len(q) < 2 {
		return quicDCID{}, false
	}
	return quicDCID{off: 1}, true
}

// route mirrors the part of xdp_lb after parsing.
func (r *Router) route(p *datagram, q []byte, ev ReasonSet, to *routeTo) Decision {
	st := r.state.Load()
	vk := bpf.VIPKey{Addr: p.dst, Port: htons(p.dport), Family: p.family, Proto: protoUDP}
	vip := st.vips[vk]
	if vip == nil {
		return r.record(Decision{Verdict: VerdictPass, Reason: reasonPassNotVIP, Events: ev})
	}
	if to != nil {
		to.st, to.vip = st, vip
	}
	if vip.info.Mode != bpf.ModeL4 {
		return r.record(Decision{Verdict: VerdictPass, Reason: reasonPassL7, Events: ev})
	}
	if vip.info.Flags&bpf.VIPUserspace != 0 && !r.behindXDP {
		// XDP found no socket on the queue and decides itself.
		ev.add(reasonSlowPathNoSocket)
	}
	if d, ok := parseQUIC(q); ok {
		if dec, done := r.routeCID(st, p, vip, q, d, &ev); done {
			return r.record(dec)
		}
	} else if vip.info.Flags&bpf.VIPStrict != 0 {
		return r.record(Decision{Verdict: VerdictDrop, Reason: reasonDropNotQUICStrict, Events: ev})
	} else {
		ev.add(reasonNotQUIC)
	}
	return r.record(r.routeFlowOrHash(st, p, vip, ev))
}

// usable mirrors usable_backend: healthy or draining, in a filled slot.
func (st *routeState) usable(idx uint32) (*bpf.Backend, bool) {
	if idx >= uint32(len(st.backends)) {
		return nil, false
	}
	be := &st.backends[idx]
	if be.Family == bpf.FamilyNone || be.Flags&(bpf.BackendHealthy|bpf.BackendDraining) == 0 {
		return nil, false
	}
	return be, true
}

// forward mirrors forward/send/encap: the verdict of sending to be. Only
// ipip can fail, when the load balancer has no outer source address of
// the backend's family (the other failures of encap need a frame shorter
// than its headers or no headroom, which cannot reach it).
func (st *routeState) forward(vip *routeVIP, idx uint32, be *bpf.Backend, path Path, ev ReasonSet) Decision {
	d := Decision{Verdict: VerdictTX, Reason: reasonTX, Path: path, Backend: idx, Events: ev}
	if vip.info.Forwarding == bpf.ForwardingIPIP {
		var none bool
		if be.Family == bpf.FamilyIPv4 {
			none = st.lb.Addr4 == [4]byte{}
		} else {
			none = st.lb.Addr6 == [16]byte{}
		}
		if none {
			d.Verdict, d.Reason = VerdictPass, reasonPassNoEncapSource
		}
	}
	return d
}

// routeCID mirrors route_cid (draft-21 §4.2 step 1). done is false to fall
// through to the flow table.
func (r *Router) routeCID(st *routeState, p *datagram, vip *routeVIP, q []byte, d quicDCID, ev *ReasonSet) (dec Decision, done bool) {
	if d.isLong {
		if d.len > bpf.MaxCIDLen {
			// RFC 8999 allows it for other versions; no QUIC-LB CID is
			// that long.
			ev.add(reasonCIDTooLong)
			return Decision{}, false
		}
		if d.len == 0 {
			ev.add(reasonCIDTooShort)
			return Decision{}, false
		}
	}
	if d.off+1 > len(q) {
		return Decision{}, false
	}
	cp := q[d.off] >> 5 // config rotation codepoint (draft-21 §3)
	if cp >= bpf.CIDConfigs {
		ev.add(reasonCIDNoConfig)
		return Decision{}, false
	}
	cfg := vip.info.Cid[cp]
	need := 1 + int(cfg.ServerIdLen) + int(cfg.NonceLen)
	if cfg.Flags&bpf.CIDConfigPresent == 0 || cfg.ServerIdLen == 0 ||
		cfg.ServerIdLen > bpf.MaxServerIDLen || need > bpf.MaxCIDLen {
		ev.add(reasonCIDNoConfig)
		return Decision{}, false
	}
	if !d.isLong {
		d.len = need
	}
	// lb.c reads 20 octets from the DCID start at once: a valid QUIC
	// packet always has them (the header protection sample, RFC 9001
	// §5.4.2, is 16 octets taken 4 after the packet number, which follows
	// the DCID).
	if d.off+bpf.MaxCIDLen > len(q) || d.off+d.len > len(q) {
		ev.add(reasonCIDTooShort)
		return Decision{}, false
	}
	dcid := q[d.off : d.off+d.len]

	if cfg.Flags&bpf.CIDConfigEncrypted != 0 {
		k := bpf.CIDKey{VipId: vip.info.Id, Len: uint8(d.len)}
		copy(k.Cid[:], dcid)
		idx, ok := r.tables.getCID(k)
		if !ok {
			ev.add(reasonCIDCacheMiss)
			if vip.decoder != nil {
				return r.decrypt(st, vip, k, dcid, ev)
			}
			if vip.info.Flags&bpf.VIPSlowPath != 0 {
				// Mirrors slow_path with no socket on the queue.
				ev.add(reasonSlowPathNoSocket)
			}
			if vip.info.Flags&bpf.VIPCIDMissPass != 0 {
				return Decision{Verdict: VerdictPass, Reason: reasonPassCIDCacheMiss, Events: *ev}, true
			}
			return Decision{}, false
		}
		be, ok := st.usable(idx)
		if !ok {
			ev.add(reasonCIDBackendUnusable)
			return Decision{}, false
		}
		dec := st.forward(vip, idx, be, PathCIDCache, *ev)
		if r.behindXDP && vip.info.Flags&bpf.VIPUserspace == 0 {
			// XDP missed a DCID the slow path knows: cid_cache lost it
			// (LRU) or has not got it yet; put it back.
			dec.Learned, dec.CIDKey = true, k
		}
		return dec, true
	}

	// Plaintext: the server ID is octets 1..server_id_len (draft-21 §5.2).
	if d.len < 1+int(cfg.ServerIdLen) {
		ev.add(reasonCIDTooShort)
		return Decision{}, false
	}
	k := bpf.ServerIDKey{VipId: vip.info.Id, Len: cfg.ServerIdLen}
	copy(k.Sid[:], dcid[1:1+int(cfg.ServerIdLen)])
	return st.byServerID(vip, k, PathCID, ev)
}

// byServerID routes by a server_ids entry, or falls through.
func (st *routeState) byServerID(vip *routeVIP, k bpf.ServerIDKey, path Path, ev *ReasonSet) (Decision, bool) {
	idx, ok := st.serverIDs[k]
	if !ok {
		ev.add(reasonCIDUnknownServer)
		return Decision{}, false
	}
	be, ok := st.usable(idx)
	if !ok {
		ev.add(reasonCIDBackendUnusable)
		return Decision{}, false
	}
	return st.forward(vip, idx, be, path, *ev), true
}

// decrypt is the slow path XDP hands up (DESIGN.md "Encrypted CIDs"):
// decode the server ID with the VIP's key, route by it, and cache the
// DCID so that the connection's next packets are cache hits.
func (r *Router) decrypt(st *routeState, vip *routeVIP, ck bpf.CIDKey, dcid []byte, ev *ReasonSet) (Decision, bool) {
	var buf [bpf.MaxCIDLen]byte
	sid, err := vip.decoder.ServerID(buf[:0], dcid)
	if err != nil || len(sid) == 0 || len(sid) > bpf.MaxServerIDLen {
		return Decision{}, false
	}
	k := bpf.ServerIDKey{VipId: vip.info.Id, Len: uint8(len(sid))}
	copy(k.Sid[:], sid)
	dec, ok := st.byServerID(vip, k, PathCID, ev)
	if !ok {
		return dec, false
	}
	r.tables.putCID(ck, dec.Backend)
	dec.Learned, dec.CIDKey = true, ck
	return dec, true
}

// routeFlowOrHash mirrors route_flow_or_hash: the flow table (draft-21
// §4.2 step 4: the flow cache), else the Maglev table (step 5), recording
// the choice in the flow cache.
func (r *Router) routeFlowOrHash(st *routeState, p *datagram, vip *routeVIP, ev ReasonSet) Decision {
	fk := bpf.FlowKey{Src: p.src, VipId: vip.info.Id, SrcPort: htons(p.sport)}
	if idx, ok := r.tables.lookupFlow(fk); ok {
		if be, ok := st.usable(idx); ok {
			return st.forward(vip, idx, be, PathFlow, ev)
		}
		ev.add(reasonFlowBackendUnusable)
	}

	invalid := Decision{Verdict: VerdictPass, Reason: reasonPassBackendInvalid}
	m := vip.info.MaglevSize
	if m == 0 || m > bpf.MaglevMaxSize || vip.table == nil {
		invalid.Events = ev
		return invalid
	}
	h := bpf.FlowHash(vip.info.Hash,
		netip.AddrPortFrom(p.addr(p.src), p.sport),
		netip.AddrPortFrom(p.addr(p.dst), p.dport))
	entry := h % m
	if entry >= uint32(len(vip.table)) {
		invalid.Events = ev
		return invalid
	}
	idx := vip.table[entry]
	be, ok := st.usable(idx)
	if !ok {
		invalid.Events = ev
		return invalid
	}
	r.tables.recordFlow(fk, idx)
	return st.forward(vip, idx, be, PathMaglev, ev)
}

func (p *datagram) addr(a [16]byte) netip.Addr {
	if p.family == bpf.FamilyIPv4 {
		return netip.AddrFrom4([4]byte(a[:4]))
	}
	return netip.AddrFrom16(a)
}

// htons converts a port to the network-order value keys hold (bpfel).
func htons(v uint16) uint16 { return v<<8 | v>>8 }
