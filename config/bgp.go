package config

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults of BGPConfig, each stated on its field.
const (
	DefaultBGPWithdrawGrace = 5 * time.Second
	DefaultBGPHoldTime      = 90 * time.Second // RFC 4271 §10
	DefaultBGPPort          = 179              // RFC 4271 §8.2.1
)

// Bounds of BGP settings.
const (
	// MinBGPHoldTime is the smallest non-zero hold time BGP allows (RFC 4271
	// §4.2); spooky always sends keepalives, so zero is not offered.
	MinBGPHoldTime = 3 * time.Second
	// MaxBGPHoldTime is the largest the OPEN message's 16-bit field holds.
	MaxBGPHoldTime = 65535 * time.Second
	// MaxBGPWithdrawGrace bounds the wait on shutdown, which a service
	// manager's stop timeout (systemd, Kubernetes) must exceed.
	MaxBGPWithdrawGrace = 5 * time.Minute
	// MaxBGPPasswordLen is the longest TCP MD5 key Linux takes
	// (TCP_MD5SIG_MAXKEYLEN).
	MaxBGPPasswordLen = 80
)

// BGPConfig announces every VIP's host route (/32, /128) to routers while
// the VIP can be served: spooky serves it and at least one of its backends
// (or, for l7, upstreams) is healthy. Routers spread flows over the hosts
// that announce a VIP with ECMP (docs/operations.md). If the section is
// left out, nothing is announced.
type BGPConfig struct {
	// ASN is the local autonomous system number, 1..4294967295. Required.
	ASN int `yaml:"asn"`
	// RouterID is the BGP identifier: an IPv4 address unique among the
	// routers' peers (RFC 6286), usually the host's own. Required.
	RouterID netip.Addr `yaml:"router_id"`
	// ListenPort is the TCP port on which spooky accepts sessions. If
	// zero, spooky does not listen and dials its peers (configure the
	// routers passive, or let them retry: either side may connect).
	ListenPort int `yaml:"listen_port"`
	// WithdrawGrace is how long spooky waits on SIGTERM between
	// withdrawing its routes and stopping, so that routers move new flows
	// elsewhere while this host still forwards what is in flight. If
	// zero and left out, 5s; at most 5m.
	WithdrawGrace time.Duration `yaml:"withdraw_grace"`
	// NextHopIPv4 and NextHopIPv6, if set, are the next hops announced
	// for VIPs of their family. If not, each session's own local address
	// is, which is what routers on the same segment need.
	NextHopIPv4 netip.Addr `yaml:"next_hop_ipv4"`
	NextHopIPv6 netip.Addr `yaml:"next_hop_ipv6"`
	// Peers are the routers. At least one.
	Peers []BGPPeerConfig `yaml:"peers"`
	// VIPs set route attributes per VIP address. Optional: a VIP not
	// listed is announced without communities or MED.
	VIPs []BGPVIPConfig `yaml:"vips"`
}

// BGPPeerConfig is one router.
type BGPPeerConfig struct {
	// Address is the router's address. Its family is the family of the
	// routes the session carries: peer over IPv4 for IPv4 VIPs and over
	// IPv6 for IPv6 VIPs. Required; unique.
	Address netip.Addr `yaml:"address"`
	// ASN is the router's autonomous system, 1..4294967295. Required.
	ASN int `yaml:"asn"`
	// Port is the router's TCP port. If zero, 179.
	Port int `yaml:"port"`
	// HoldTime is the hold time spooky offers, 3s..65535s in whole
	// seconds; a session uses the smaller of both sides'. It bounds how
	// long a router sends traffic to a host that died without closing its
	// session. If zero and left out, 90s.
	HoldTime time.Duration `yaml:"hold_time"`
	// Password, if set, signs the session with TCP MD5 (RFC 2385). At
	// most 80 octets.
	Password string `yaml:"password"`
}

// BGPVIPConfig sets the attributes of one VIP's route.
type BGPVIPConfig struct {
	// Address is a VIP: the address of at least one service. Required.
	Address netip.Addr `yaml:"address"`
	// Communities are RFC 1997 communities written ASN:value, each part
	// 0..65535, e.g. "65001:100".
	Communities []string `yaml:"communities"`
	// MED, if set, is the MULTI_EXIT_DISC, 0..4294967295: routers prefer
	// the lower one among routes from one AS, so hosts with different
	// MEDs are primary and backup rather than ECMP.
	MED *int `yaml:"med"`
}

// CommunityValues returns the communities as 32-bit values (ASN<<16 |
// value). It fails only on communities that validation rejects.
func (v BGPVIPConfig) CommunityValues() ([]uint32, error) {
	out := make([]uint32, 0, len(v.Communities))
	for _, s := range v.Communities {
		c, err := ParseCommunity(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ParseCommunity reads an RFC 1997 community written ASN:value, each
// 0..65535.
func ParseCommunity(s string) (uint32, error) {
	as, val, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q is not ASN:value", s)
	}
	a, err1 := strconv.ParseUint(as, 10, 16)
	v, err2 := strconv.ParseUint(val, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: ASN and value must each be 0..65535", s)
	}
	return uint32(a)<<16 | uint32(v), nil
}

// VIP returns the attributes set for address a, if any.
func (b *BGPConfig) VIP(a netip.Addr) (BGPVIPConfig, bool) {
	for _, v := range b.VIPs {
		if v.Address == a {
			return v, true
		}
	}
	return BGPVIPConfig{}, false
}

func (b *BGPConfig) setDefaults(d defaulter) {
	def(d, "bgp.withdraw_grace", &b.WithdrawGrace, DefaultBGPWithdrawGrace)
	for i := range b.Peers {
		p := fmt.Sprintf("bgp.peers[%d]", i)
		def(d, p+".hold_time", &b.Peers[i].HoldTime, DefaultBGPHoldTime)
		def(d, p+".port", &b.Peers[i].Port, DefaultBGPPort)
	}
}

// bgp checks the bgp section against the services it announces.
func (v *validator) bgp(c *Config) {
	b := c.BGP
	if b == nil {
		return
	}
	v.asn("bgp.asn", b.ASN)
	switch {
	case !b.RouterID.IsValid():
		v.missing("bgp.router_id")
	case !b.RouterID.Is4() || b.RouterID.IsUnspecified():
		v.errorf("bgp.router_id", "router_id: %s is not a BGP identifier: write a non-zero IPv4 address, usually the host's own (RFC 6286)", b.RouterID)
	}
	v.port("bgp.listen_port", b.ListenPort, false)
	switch {
	case b.WithdrawGrace < 0:
		v.errorf("bgp.withdraw_grace", "withdraw_grace: must not be negative, got %v", b.WithdrawGrace)
	case b.WithdrawGrace > MaxBGPWithdrawGrace:
		v.errorf("bgp.withdraw_grace", "withdraw_grace: %v is longer than %v", b.WithdrawGrace, MaxBGPWithdrawGrace)
	}
	if a := b.NextHopIPv4; a.IsValid() {
		if !a.Is4() {
			v.errorf("bgp.next_hop_ipv4", "next_hop_ipv4: %s is not an IPv4 address", a)
		} else {
			v.unicast("bgp.next_hop_ipv4", a)
		}
	}
	if a := b.NextHopIPv6; a.IsValid() {
		if !a.Is6() || a.Is4In6() {
			v.errorf("bgp.next_hop_ipv6", "next_hop_ipv6: %s is not an IPv6 address", a)
		} else {
			v.unicast("bgp.next_hop_ipv6", a)
		}
	}

	if len(b.Peers) == 0 {
		v.errorf("bgp.peers", "peers: at least one peer is required to announce anything")
	}
	peers := map[netip.Addr]string{}
	for i, p := range b.Peers {
		pp := fmt.Sprintf("bgp.peers[%d]", i)
		if v.unicast(pp+".address", p.Address) {
			if first, dup := peers[p.Address]; dup {
				v.errorf(pp+".address", "address: peer %s is already defined (first at %s)", p.Address, v.loc(first))
			} else {
				peers[p.Address] = pp + ".address"
			}
		}
		v.asn(pp+".asn", p.ASN)
		v.port(pp+".port", p.Port, false)
		switch {
		case p.HoldTime < MinBGPHoldTime || p.HoldTime > MaxBGPHoldTime:
			v.errorf(pp+".hold_time", "hold_time: %v is out of range %v..%v (RFC 4271 §4.2)", p.HoldTime, MinBGPHoldTime, MaxBGPHoldTime)
		case p.HoldTime%time.Second != 0:
			v.errorf(pp+".hold_time", "hold_time: %v is not a whole number of seconds, as BGP counts it", p.HoldTime)
		}
		if len(p.Password) > MaxBGPPasswordLen {
			v.errorf(pp+".password", "password: %d octets; TCP MD5 keys hold at most %d", len(p.Password), MaxBGPPasswordLen)
		}
	}

	vips := map[netip.Addr]bool{}
	for _, s := range c.Services {
		vips[s.Address] = true
	}
	seen := map[netip.Addr]string{}
	for i, vc := range b.VIPs {
		vp := fmt.Sprintf("bgp.vips[%d]", i)
		switch {
		case !vc.Address.IsValid():
			v.missing(vp + ".address")
		case !vips[vc.Address]:
			v.errorf(vp+".address", "address: %s is not the address of any service", vc.Address)
		default:
			if first, dup := seen[vc.Address]; dup {
				v.errorf(vp+".address", "address: VIP %s is already listed (first at %s)", vc.Address, v.loc(first))
			}
			seen[vc.Address] = vp + ".address"
		}
		for j, s := range vc.Communities {
			if _, err := ParseCommunity(s); err != nil {
				v.errorf(fmt.Sprintf("%s.communities[%d]", vp, j), "communities: %q is not ASN:value with each part 0..65535 (RFC 1997)", echo(s))
			}
		}
		if vc.MED != nil && (*vc.MED < 0 || *vc.MED > math.MaxUint32) {
			v.errorf(vp+".med", "med: %d is out of range 0..4294967295", *vc.MED)
		}
	}
}

// asn checks an autonomous system number: 4 octets (RFC 6793), not 0
// (RFC 7607).
func (v *validator) asn(path string, n int) {
	switch {
	case n == 0 && !v.ix.present(path):
		v.missing(path)
	case n < 1 || n > math.MaxUint32:
		v.errorf(path, "%s: %d is out of range 1..4294967295", fieldName(path), n)
	}
}
