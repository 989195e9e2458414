package forwarder

import (
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/spooky-lb/spooky/bpf"
)

// Stats are the XDP program's counters, summed over CPUs.
type Stats struct {
	VIPs     []VIPStats     `json:"vips"`
	Backends []BackendStats `json:"backends"`
	// Reasons counts packets by verdict reason and events on the way,
	// by name (bpf.Reason.String), including zeros.
	Reasons map[string]uint64 `json:"reasons"`
	// SlowPathReasons counts, by the same names, what Go decided for the
	// datagrams XDP redirected to it (redirect_slow_path and
	// redirect_userspace in Reasons): with --dataplane userspace, every
	// verdict. Empty for pins without the slow path.
	SlowPathReasons map[string]uint64 `json:"slow_path_reasons,omitempty"`
}

// Reason returns the count of reason name in XDP and the slow path together.
func (s *Stats) Reason(name string) uint64 { return s.Reasons[name] + s.SlowPathReasons[name] }

// VIPStats are one VIP's counters: forwarded packets, by path. Packets
// and Bytes count what XDP and the slow path forwarded; the by-path
// counters are XDP's, SlowPath has the slow path's.
type VIPStats struct {
	ID uint32 `json:"id"`
	// Service names the VIP's service in the config that programmed it.
	Service  string         `json:"service,omitempty"`
	Address  netip.AddrPort `json:"address"`
	Mode     string         `json:"mode"`
	Packets  uint64         `json:"packets"`
	Bytes    uint64         `json:"bytes"`
	CID      uint64         `json:"by_cid"`
	CIDCache uint64         `json:"by_cid_cache"`
	Flow     uint64         `json:"by_flow"`
	Maglev   uint64         `json:"by_maglev"`
	// SlowPath are the VIP's datagrams XDP handed to Go (stats_slowpath.go).
	SlowPath SlowPathStats `json:"slow_path"`
}

// BackendStats are one backend slot's counters: what XDP and the slow
// path forwarded to it.
type BackendStats struct {
	Index uint32 `json:"index"`
	// Name is "service/backend" as configured; empty for a removed slot.
	Name    string     `json:"name,omitempty"`
	Address netip.Addr `json:"address"`
	State   string     `json:"state"`
	// MAC (l2dsr) and NextHopMAC (ipip) are where XDP sends the
	// backend's packets, as last resolved from the neighbour table.
	MAC        string `json:"mac,omitempty"`
	NextHopMAC string `json:"next_hop_mac,omitempty"`
	Packets    uint64 `json:"packets"`
	Bytes      uint64 `json:"bytes"`
}

// ReadStats reads the counters pinned for iface under root (DefaultPinRoot
// if empty). Backend slots that are empty and never counted are left out.
func ReadStats(root, iface string) (*Stats, error) {
	names := []string{"vips", "backends", "vip_stats", "backend_stats", "reason_stats"}
	maps := map[string]*ebpf.Map{}
	defer func() {
		for _, m := range maps {
			m.Close()
		}
	}()
	for _, n := range names {
		m, err := OpenPinnedMap(root, iface, n)
		if err != nil {
			return nil, err
		}
		maps[n] = m
	}
	st := &Stats{Reasons: map[string]uint64{}}
	vipNames, backendNames := readNames(root, iface)

	var key bpf.VIPKey
	var info bpf.VIPInfo
	it := maps["vips"].Iterate()
	for it.Next(&key, &info) {
		var per []bpf.VIPCounters
		if err := maps["vip_stats"].Lookup(info.Id, &per); err != nil {
			return nil, fmt.Errorf("read vip_stats[%d]: %w", info.Id, err)
		}
		v := VIPStats{ID: info.Id, Service: vipNames[info.Id], Address: vipAddrPort(key), Mode: "l4"}
		if info.Mode == bpf.ModeL7 {
			v.Mode = "l7"
		}
		for _, c := range per {
			v.Packets += c.Packets
			v.Bytes += c.Bytes
			v.CID += c.Cid
			v.CIDCache += c.CidCache
			v.Flow += c.Flow
			v.Maglev += c.Maglev
		}
		for _, c := range per {
			v.SlowPath.Redirected += c.SlowPath
			v.SlowPath.Limited += c.SlowPathLimited
		}
		st.VIPs = append(st.VIPs, v)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate vips: %w", err)
	}
	if err := readSlowPathStats(root, iface, st.VIPs); err != nil {
		return nil, err
	}
	sort.Slice(st.VIPs, func(i, j int) bool { return st.VIPs[i].ID < st.VIPs[j].ID })

	slowBackends := readSlowPathBackends(root, iface)
	for i := uint32(0); i < bpf.MaxBackends; i++ {
		var b bpf.Backend
		if err := maps["backends"].Lookup(i, &b); err != nil {
			return nil, fmt.Errorf("read backends[%d]: %w", i, err)
		}
		var per []bpf.BackendCounters
		if err := maps["backend_stats"].Lookup(i, &per); err != nil {
			return nil, fmt.Errorf("read backend_stats[%d]: %w", i, err)
		}
		s := BackendStats{
			Index: i, Name: backendNames[i], Address: backendAddr(b), State: backendState(b),
			MAC: macString(b.Mac), NextHopMAC: macString(b.NexthopMac),
		}
		for _, c := range per {
			s.Packets += c.Packets
			s.Bytes += c.Bytes
		}
		if slowBackends != nil {
			s.Packets += slowBackends[i].Packets
			s.Bytes += slowBackends[i].Bytes
		}
		if b.Family == bpf.FamilyNone && s.Packets == 0 {
			continue
		}
		st.Backends = append(st.Backends, s)
	}

	for r := 0; r < bpf.NumReasons; r++ {
		var per []uint64
		if err := maps["reason_stats"].Lookup(uint32(r), &per); err != nil {
			return nil, fmt.Errorf("read reason_stats[%d]: %w", r, err)
		}
		var sum uint64
		for _, c := range per {
			sum += c
		}
		st.Reasons[bpf.Reason(r).String()] = sum
	}
	var err error
	if st.SlowPathReasons, err = readSlowPathReasons(root, iface); err != nil {
		return nil, err
	}
	return st, nil
}

// readNames returns the names the daemon stored for VIP ids and backend
// indexes (see idStore); empty maps if it stored none.
func readNames(root, iface string) (vips, backends map[uint32]string) {
	vips, backends = map[uint32]string{}, map[uint32]string{}
	m, err := OpenPinnedMap(root, iface, idStorePin)
	if err != nil {
		return vips, backends
	}
	defer m.Close()
	var k idStoreKey
	var v idStoreValue
	for it := m.Iterate(); it.Next(&k, &v); {
		switch k.Kind {
		case idKindVIP:
			vips[k.ID] = bytesString(v[:])
		case idKindBackend:
			backends[k.ID] = bytesString(v[:])
		}
	}
	return vips, backends
}

// macString formats a MAC, or returns "" for the zero one (not used).
func macString(m [6]byte) string {
	if m == [6]byte{} {
		return ""
	}
	return net.HardwareAddr(m[:]).String()
}

func vipAddrPort(k bpf.VIPKey) netip.AddrPort {
	port := k.Port<<8 | k.Port>>8
	if k.Family == bpf.FamilyIPv4 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(k.Addr[:4])), port)
	}
	return netip.AddrPortFrom(netip.AddrFrom16(k.Addr), port)
}

func backendAddr(b bpf.Backend) netip.Addr {
	switch b.Family {
	case bpf.FamilyIPv4:
		return netip.AddrFrom4([4]byte(b.Addr[:4]))
	case bpf.FamilyIPv6:
		return netip.AddrFrom16(b.Addr)
	}
	return netip.Addr{}
}

func backendState(b bpf.Backend) string {
	switch {
	case b.Family == bpf.FamilyNone:
		return "removed"
	case b.Flags&bpf.BackendHealthy != 0:
		return "healthy"
	case b.Flags&bpf.BackendDraining != 0:
		return "draining"
	}
	return "unusable"
}
