package bgp

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Route is one announced prefix: for spooky, a VIP's host route (/32 or
// /128).
type Route struct {
	Prefix netip.Prefix
	// NextHop, if valid, is the next hop announced (of the prefix's
	// family). If not, each session's own local address is, which is
	// what routers on the same segment need.
	NextHop netip.Addr
	// Communities are RFC 1997 communities, each ASN<<16 | value.
	Communities []uint32
	// MED, if HasMED, is the MULTI_EXIT_DISC (RFC 4271 §5.1.4): routers
	// prefer the lower among routes from one neighbouring AS, so unequal
	// MEDs turn ECMP into primary and backup.
	MED    uint32
	HasMED bool
}

// String formats r as operators read it, e.g.
// "198.18.0.10/32 communities 65001:100 med 10".
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Prefix.String())
	if r.NextHop.IsValid() {
		b.WriteString(" next-hop " + r.NextHop.String())
	}
	if len(r.Communities) > 0 {
		cs := make([]string, len(r.Communities))
		for i, c := range r.Communities {
			cs[i] = FormatCommunity(c)
		}
		b.WriteString(" communities " + strings.Join(cs, ","))
	}
	if r.HasMED {
		b.WriteString(" med " + strconv.FormatUint(uint64(r.MED), 10))
	}
	return b.String()
}

// FormatCommunity writes a community as ASN:value (RFC 1997).
func FormatCommunity(c uint32) string {
	return fmt.Sprintf("%d:%d", c>>16, c&0xffff)
}

func (r Route) equal(o Route) bool {
	return r.Prefix == o.Prefix && r.NextHop == o.NextHop && r.HasMED == o.HasMED &&
		(!r.HasMED || r.MED == o.MED) && slices.Equal(r.Communities, o.Communities)
}

// path is the GoBGP form of r.
func (r Route) path() (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(r.Prefix)
	if err != nil {
		return nil, fmt.Errorf("bgp: prefix %s: %w", r.Prefix, err)
	}
	// An unspecified next hop is replaced by the session's local address
	// when GoBGP sends the route.
	nh := r.NextHop
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	family := bgp.RF_IPv4_UC
	if r.Prefix.Addr().Is4() {
		if !nh.IsValid() {
			nh = netip.IPv4Unspecified()
		}
		a, err := bgp.NewPathAttributeNextHop(nh)
		if err != nil {
			return nil, fmt.Errorf("bgp: next hop %s: %w", nh, err)
		}
		attrs = append(attrs, a)
	} else {
		family = bgp.RF_IPv6_UC
		if !nh.IsValid() {
			nh = netip.IPv6Unspecified()
		}
		// IPv6 NLRI travel in MP_REACH_NLRI (RFC 4760 §3, RFC 2545).
		a, err := bgp.NewPathAttributeMpReachNLRI(family, []bgp.PathNLRI{{NLRI: nlri}}, nh)
		if err != nil {
			return nil, fmt.Errorf("bgp: next hop %s: %w", nh, err)
		}
		attrs = append(attrs, a)
	}
	if r.HasMED {
		attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(r.MED))
	}
	if len(r.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(r.Communities))
	}
	return &apiutil.Path{Family: family, Nlri: nlri, Attrs: attrs, Age: time.Now().Unix()}, nil
}

// Announce makes the routes the speaker announces exactly routes: it
// announces new and changed routes (a changed one replaces the old, an
// implicit withdrawal, RFC 4271 §3.1) and withdraws those not listed.
// Announce(nil) withdraws everything and keeps the sessions. Prefixes must
// be unique and host routes are what spooky passes, though any prefix
// works. On error some changes may be applied; Routes says which.
func (s *Speaker) Announce(routes []Route) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	want := map[netip.Prefix]Route{}
	for _, r := range routes {
		if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() {
			return fmt.Errorf("bgp: %v is not a prefix", r.Prefix)
		}
		if r.NextHop.IsValid() && r.NextHop.Is4() != r.Prefix.Addr().Is4() {
			return fmt.Errorf("bgp: route %s: next hop %s is of the other family", r.Prefix, r.NextHop)
		}
		if _, dup := want[r.Prefix]; dup {
			return fmt.Errorf("bgp: route %s listed twice", r.Prefix)
		}
		r.Communities = slices.Clone(r.Communities)
		want[r.Prefix] = r
	}
	// Withdraw first: a host that loses a VIP must stop attracting its
	// traffic before anything else.
	for _, pfx := range slices.SortedFunc(maps.Keys(s.routes), comparePrefix) {
		if _, ok := want[pfx]; ok {
			continue
		}
		old := s.routes[pfx]
		p, err := old.path()
		if err != nil {
			return err
		}
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{p}}); err != nil {
			return fmt.Errorf("bgp: withdraw %s: %w", pfx, err)
		}
		delete(s.routes, pfx)
		s.log.Info("bgp route withdrawn", "prefix", pfx)
	}
	for _, pfx := range slices.SortedFunc(maps.Keys(want), comparePrefix) {
		r := want[pfx]
		if old, ok := s.routes[pfx]; ok && old.equal(r) {
			continue
		}
		p, err := r.path()
		if err != nil {
			return err
		}
		if _, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{p}}); err != nil {
			return fmt.Errorf("bgp: announce %s: %w", pfx, err)
		}
		s.routes[pfx] = r
		s.log.Info("bgp route announced", "route", r.String())
	}
	return nil
}

// Routes returns the routes the speaker announces, ordered by prefix.
func (s *Speaker) Routes() []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Route, 0, len(s.routes))
	for _, pfx := range slices.SortedFunc(maps.Keys(s.routes), comparePrefix) {
		r := s.routes[pfx]
		r.Communities = slices.Clone(r.Communities)
		out = append(out, r)
	}
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// HostRoute is the host route of a VIP: /32 for IPv4, /128 for IPv6.
func HostRoute(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}
