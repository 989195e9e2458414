package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Peer is one router the speaker announces to.
type Peer struct {
	// Address is the router's address; the session runs over its family
	// and carries routes of that family only (IPv4 or IPv6 unicast). The
	// routes' next hop is the speaker's own address toward it.
	Address netip.Addr
	// ASN is the router's autonomous system; equal to the local ASN makes
	// the session internal (iBGP).
	ASN uint32
	// Port is the router's TCP port. If zero, 179 (RFC 4271 §8.2.1).
	Port int
	// HoldTime is the hold time the speaker proposes, whole seconds and
	// at least 3 s (RFC 4271 §4.2; the config's default is 90 s); the
	// session uses the smaller of both sides', and keepalives go every
	// third of it. A router that hears nothing for the hold time drops
	// the session and the routes it learned over it: after a host dies
	// without a word, this bounds how long traffic still goes to it.
	HoldTime time.Duration
	// Password, if set, signs every TCP segment of the session with TCP
	// MD5 (RFC 2385); the router must use the same.
	Password string
}

// minHoldTime is the smallest non-zero hold time (RFC 4271 §4.2).
const minHoldTime = 3 * time.Second

// connectRetry is how often the speaker dials a peer it has no session
// with. GoBGP's default (120 s) would leave a VIP unannounced for two
// minutes after a router restart or a race at start-up.
const connectRetry = 5 * time.Second

// idleHoldAfterReset is how long the speaker waits after a session ends
// before it dials again (GoBGP's default is 30 s); routers damp flapping
// peers themselves.
const idleHoldAfterReset = 5 * time.Second

// apiPeer is the GoBGP form of p.
func (p Peer) apiPeer() *api.Peer {
	hold := uint64(p.HoldTime / time.Second)
	return &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
		},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:               hold,
			KeepaliveInterval:      max(hold/3, 1),
			ConnectRetry:           uint64(connectRetry / time.Second),
			IdleHoldTimeAfterReset: uint64(idleHoldAfterReset / time.Second),
		}},
	}
}

// SetPeers makes the speaker's peers exactly peers: it adds new ones,
// removes the ones not listed (their sessions close and the routers drop
// its routes) and re-creates the ones whose settings changed. Peers are
// keyed by address, which must be unique.
func (s *Speaker) SetPeers(ctx context.Context, peers []Peer) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	want := map[netip.Addr]Peer{}
	for _, p := range peers {
		if !p.Address.IsValid() {
			return errors.New("bgp: peer without an address")
		}
		if _, dup := want[p.Address]; dup {
			return fmt.Errorf("bgp: peer %s listed twice", p.Address)
		}
		if p.HoldTime < minHoldTime || p.HoldTime%time.Second != 0 {
			return fmt.Errorf("bgp: peer %s: hold time %v is not a whole number of seconds of at least %v", p.Address, p.HoldTime, minHoldTime)
		}
		want[p.Address] = p
	}
	var errs []error
	for addr, old := range s.peers {
		if p, ok := want[addr]; ok && p == old {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: remove peer %s: %w", addr, err))
			continue
		}
		delete(s.peers, addr)
		s.log.Info("bgp peer removed", "peer", addr)
	}
	for addr, p := range want {
		if _, ok := s.peers[addr]; ok {
			continue
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: p.apiPeer()}); err != nil {
			errs = append(errs, fmt.Errorf("bgp: add peer %s (AS %d): %w", addr, p.ASN, err))
			continue
		}
		s.peers[addr] = p
		s.log.Info("bgp peer added", "peer", addr, "peer_asn", p.ASN, "hold_time", p.HoldTime)
	}
	return errors.Join(errs...)
}

// PeerStatus is a peer's session as the speaker sees it.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	// State is the session's FSM state (RFC 4271 §8.2.2): idle, connect,
	// active, opensent, openconfirm or established.
	State string
	// Since is when the session was last established (if it is) or last
	// went down; zero if neither has happened.
	Since time.Time
	// HoldTime is the negotiated hold time of an established session.
	HoldTime time.Duration
	// Advertised is how many routes the speaker has sent it.
	Advertised uint64
	// LastError says why the session last went down, if it did.
	LastError string
}

// Established is the State of a session that carries routes.
const Established = "established"

// Peers returns the state of every peer, ordered by address.
func (s *Speaker) Peers(ctx context.Context) ([]PeerStatus, error) {
	var out []PeerStatus
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		st := PeerStatus{}
		if p.State != nil {
			st.Address, _ = netip.ParseAddr(p.State.NeighborAddress)
			st.ASN = p.State.PeerAsn
			st.State = apiStateName(p.State.SessionState)
			st.LastError = p.State.DisconnectMessage
		}
		if !st.Address.IsValid() && p.Conf != nil {
			st.Address, _ = netip.ParseAddr(p.Conf.NeighborAddress)
			st.ASN = p.Conf.PeerAsn
		}
		if t := p.Timers; t != nil && t.State != nil {
			if st.State == Established {
				st.HoldTime = time.Duration(t.State.NegotiatedHoldTime) * time.Second
				if t.State.Uptime != nil {
					st.Since = t.State.Uptime.AsTime()
				}
			} else if t.State.Downtime != nil && t.State.Downtime.Seconds > 0 {
				st.Since = t.State.Downtime.AsTime()
			}
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				st.Advertised += af.State.Advertised
			}
		}
		out = append(out, st)
	})
	if err != nil {
		return nil, fmt.Errorf("bgp: list peers: %w", err)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return out, nil
}

// stateName names an FSM state as RFC 4271 §8.2.2 does, in lower case.
func stateName(s bgp.FSMState) string {
	switch s {
	case bgp.BGP_FSM_IDLE:
		return "idle"
	case bgp.BGP_FSM_CONNECT:
		return "connect"
	case bgp.BGP_FSM_ACTIVE:
		return "active"
	case bgp.BGP_FSM_OPENSENT:
		return "opensent"
	case bgp.BGP_FSM_OPENCONFIRM:
		return "openconfirm"
	case bgp.BGP_FSM_ESTABLISHED:
		return Established
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// apiStateName names a session state of GoBGP's API.
func apiStateName(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_SESSION_STATE_IDLE:
		return "idle"
	case api.PeerState_SESSION_STATE_CONNECT:
		return "connect"
	case api.PeerState_SESSION_STATE_ACTIVE:
		return "active"
	case api.PeerState_SESSION_STATE_OPENSENT:
		return "opensent"
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return Established
	}
	return "unknown"
}
