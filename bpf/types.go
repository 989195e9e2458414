package bpf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
)

// Sizes of the maps, as in include/spooky.h (a test holds them equal).
const (
	// MaxVIPs bounds VIP ids: 0..MaxVIPs-1.
	MaxVIPs = 256
	// MaxBackends bounds backend indexes: 0..MaxBackends-1.
	MaxBackends = 4096
	// MaglevMaxSize is the largest Maglev table (a prime).
	MaglevMaxSize = 65537
	// CIDConfigs is the number of config rotation codepoints (0..6).
	CIDConfigs = 7
	// MaxServerIDLen is the longest plaintext server ID XDP decodes.
	MaxServerIDLen = 15
	// MaxCIDLen is the longest connection ID (RFC 9000 §17.2).
	MaxCIDLen = 20
	// MaxQueues bounds the RX queues the slow path serves (xsks).
	MaxQueues = 256
	// DefaultCIDCacheSize is cid_cache's size in the object; LoadOptions
	// may change it.
	DefaultCIDCacheSize = 65536
)

// Map value and key types, generated from include/spooky.h; see there for
// each field's meaning.
type (
	// VIPKey is the key of the vips map: a UDP service address.
	VIPKey = lbVipKey
	// VIPInfo is the value of the vips map.
	VIPInfo = lbVipInfo
	// CIDConfig is a QUIC-LB config at one codepoint, inside VIPInfo.
	CIDConfig = lbCidConfig
	// Backend is the value of the backends map.
	Backend = lbBackendInfo
	// ServerIDKey is the key of the server_ids map.
	ServerIDKey = lbServerIdKey
	// CIDKey is the key of the cid_cache map.
	CIDKey = lbCidKey
	// LBConfig is the value of the config map (index 0).
	LBConfig = lbLbConfig
	// VIPCounters is the per-CPU value of the vip_stats map.
	VIPCounters = lbVipCounters
	// BackendCounters is the per-CPU value of the backend_stats map.
	BackendCounters = lbBackendCounters
	// Reason indexes the reason_stats map.
	Reason = lbReason
	// Family is an address family as stored in keys and values.
	Family = lbFamily
	// Mode says which tier serves a VIP.
	Mode = lbVipMode
	// Forwarding says how packets reach a VIP's backends.
	Forwarding = lbForwarding
	// HashKind says what the Maglev hash covers.
	HashKind = lbHashKind
	// VIPFlags are VIPInfo.Flags.
	VIPFlags = lbVipFlags
	// CIDConfigFlags are CIDConfig.Flags.
	CIDConfigFlags = lbCidConfigFlags
	// BackendFlags are Backend.Flags.
	BackendFlags = lbBackendFlags
	// SlowPathLimit is the value of the slow_path_limits map.
	SlowPathLimit = lbSlowPathLimit
	// SlowPathCounters is the value of the slow_path_stats map.
	SlowPathCounters = lbSlowPathCounters
	// DecapKey is the key of the decap_addrs map.
	DecapKey = decapDecapKey
	// DecapReason indexes the decap_stats map.
	DecapReason = decapDecapReason
)

// Enum values under Go names; include/spooky.h documents each.
const (
	FamilyNone = lbFamilyFAMILY_NONE
	FamilyIPv4 = lbFamilyFAMILY_IPV4
	FamilyIPv6 = lbFamilyFAMILY_IPV6

	ModeL4 = lbVipModeVIP_MODE_L4
	ModeL7 = lbVipModeVIP_MODE_L7

	ForwardingL2DSR = lbForwardingFORWARDING_L2DSR
	ForwardingIPIP  = lbForwardingFORWARDING_IPIP

	Hash4Tuple = lbHashKindHASH_4TUPLE
	HashSrcIP  = lbHashKindHASH_SRC_IP

	VIPStrict      = lbVipFlagsVIP_F_STRICT
	VIPCIDMissPass = lbVipFlagsVIP_F_CID_MISS_PASS
	VIPSlowPath    = lbVipFlagsVIP_F_SLOW_PATH
	VIPUserspace   = lbVipFlagsVIP_F_USERSPACE

	CIDConfigPresent   = lbCidConfigFlagsCID_CONFIG_PRESENT
	CIDConfigEncrypted = lbCidConfigFlagsCID_CONFIG_ENCRYPTED

	BackendHealthy  = lbBackendFlagsBACKEND_F_HEALTHY
	BackendDraining = lbBackendFlagsBACKEND_F_DRAINING
)

// ErrInvalidKey is wrapped by the key constructors' errors.
var ErrInvalidKey = errors.New("invalid map key")

// familyAddr returns the family and 16-octet form of addr (IPv4 in
// octets 0..3). IPv4-mapped IPv6 addresses count as IPv4.
func familyAddr(addr netip.Addr) (Family, [16]byte) {
	var out [16]byte
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		a := addr.As4()
		copy(out[:], a[:])
		return FamilyIPv4, out
	case addr.Is6():
		return FamilyIPv6, addr.As16()
	}
	return FamilyNone, out
}

// htons converts a port to the network-order value the kernel stores.
func htons(v uint16) uint16 { return v<<8 | v>>8 }

// NewVIPKey returns the vips key of a UDP service at ap.
func NewVIPKey(ap netip.AddrPort) VIPKey {
	fam, addr := familyAddr(ap.Addr())
	return VIPKey{Addr: addr, Port: htons(ap.Port()), Family: fam, Proto: 17}
}

// NewFlowKey returns the flow_cache entry key of the client at src talking
// to VIP vipID.
func NewFlowKey(vipID uint32, src netip.AddrPort) FlowKey {
	_, addr := familyAddr(src.Addr())
	return FlowKey{Src: addr, VipId: vipID, SrcPort: htons(src.Port())}
}

// NewServerIDKey returns the server_ids key of a plaintext server ID of
// 1..MaxServerIDLen octets.
func NewServerIDKey(vipID uint32, serverID []byte) (ServerIDKey, error) {
	if len(serverID) < 1 || len(serverID) > MaxServerIDLen {
		return ServerIDKey{}, fmt.Errorf("%w: server ID of %d octets, want 1..%d", ErrInvalidKey, len(serverID), MaxServerIDLen)
	}
	k := ServerIDKey{VipId: vipID, Len: uint8(len(serverID))}
	copy(k.Sid[:], serverID)
	return k, nil
}

// NewCIDKey returns the cid_cache key of a whole connection ID (first
// octet included) of 1..MaxCIDLen octets.
func NewCIDKey(vipID uint32, cid []byte) (CIDKey, error) {
	if len(cid) < 1 || len(cid) > MaxCIDLen {
		return CIDKey{}, fmt.Errorf("%w: connection ID of %d octets, want 1..%d", ErrInvalidKey, len(cid), MaxCIDLen)
	}
	k := CIDKey{VipId: vipID, Len: uint8(len(cid))}
	copy(k.Cid[:], cid)
	return k, nil
}

// NewDecapKey returns the decap_addrs key of a local address.
func NewDecapKey(addr netip.Addr) DecapKey {
	fam, a := familyAddr(addr)
	return DecapKey{Addr: a, Family: uint8(fam)}
}

// NewBackend returns a backends value. mac is the backend's own MAC
// (l2dsr); nextHop is the MAC of the next hop toward addr (ipip); either
// may be nil if the backend serves only VIPs of the other mode.
func NewBackend(addr netip.Addr, mac, nextHop net.HardwareAddr, flags BackendFlags) (Backend, error) {
	fam, a := familyAddr(addr)
	if fam == FamilyNone {
		return Backend{}, fmt.Errorf("backend address %v: not IPv4 or IPv6", addr)
	}
	b := Backend{Addr: a, Family: fam, Flags: flags}
	if err := copyMAC(b.Mac[:], mac); err != nil {
		return Backend{}, fmt.Errorf("backend %v mac: %w", addr, err)
	}
	if err := copyMAC(b.NexthopMac[:], nextHop); err != nil {
		return Backend{}, fmt.Errorf("backend %v next-hop mac: %w", addr, err)
	}
	return b, nil
}

// NewLBConfig returns the config value: the MAC of the interface XDP runs
// on and the outer source addresses for ipip (either may be invalid, the
// zero netip.Addr, if no backend of that family is reached by ipip).
func NewLBConfig(mac net.HardwareAddr, addr4, addr6 netip.Addr) (LBConfig, error) {
	var c LBConfig
	if err := copyMAC(c.Mac[:], mac); err != nil {
		return c, fmt.Errorf("load balancer mac: %w", err)
	}
	if addr4.IsValid() {
		if !addr4.Unmap().Is4() {
			return c, fmt.Errorf("load balancer ipv4 source %v: not IPv4", addr4)
		}
		c.Addr4 = addr4.Unmap().As4()
	}
	if addr6.IsValid() {
		if !addr6.Is6() || addr6.Is4In6() {
			return c, fmt.Errorf("load balancer ipv6 source %v: not IPv6", addr6)
		}
		c.Addr6 = addr6.As16()
	}
	return c, nil
}

func copyMAC(dst []byte, mac net.HardwareAddr) error {
	if mac == nil {
		return nil
	}
	if len(mac) != 6 {
		return fmt.Errorf("%v is not a 6-octet Ethernet address", mac)
	}
	copy(dst, mac)
	return nil
}

// MaglevSlot returns the key of the maglev outer map for a VIP's slot
// (0 or 1); VIPInfo.MaglevSlot names the active one.
func MaglevSlot(vipID, slot uint32) uint32 { return vipID*2 + slot&1 }

// NewMaglevTable creates a Maglev table to store in the maglev map:
// entry -> backend index. len(entries) is the table size M, a prime of at
// most MaglevMaxSize, which VIPInfo.MaglevSize must repeat. The caller
// closes the returned map once it is stored (the outer map keeps it).
func NewMaglevTable(entries []uint32) (*ebpf.Map, error) {
	if len(entries) == 0 || len(entries) > MaglevMaxSize {
		return nil, fmt.Errorf("maglev table of %d entries: want 1..%d", len(entries), MaglevMaxSize)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "maglev_table",
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: uint32(len(entries)),
		Flags:      bpfFInnerMap,
	})
	if err != nil {
		return nil, fmt.Errorf("create maglev table: %w", err)
	}
	keys := make([]uint32, len(entries))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := m.BatchUpdate(keys, entries, nil); err != nil {
		m.Close()
		return nil, fmt.Errorf("fill maglev table: %w", err)
	}
	return m, nil
}

// bpfFInnerMap is BPF_F_INNER_MAP: inner arrays of any size may share
// one outer map (Linux 5.10).
const bpfFInnerMap = 1 << 12
