// Package bgp announces spooky's VIPs to routers over BGP-4 (RFC 4271), so
// that several spooky hosts can sit behind the routers' equal-cost
// multipath (ECMP) and each carry a share of every VIP (DESIGN.md,
// "Scale-out"). It wraps GoBGP as a library: a Speaker takes the peers and
// the set of host routes that should be announced, and reconciles what it
// announces with that set (announce what is new, withdraw what is gone).
//
// A Speaker only originates routes: it accepts none from its peers (the
// import policy rejects everything), installs nothing in the kernel, and
// by default does not listen for connections, it dials its peers.
//
// Only this package imports GoBGP.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Config is a speaker's own identity.
type Config struct {
	// ASN is the local autonomous system number, 1..4294967295 (4-octet
	// ASNs, RFC 6793). Required.
	ASN uint32
	// RouterID is the BGP identifier, an IPv4 address unique among the
	// routers' peers (RFC 6286). Required.
	RouterID netip.Addr
	// ListenPort is the TCP port on which the speaker accepts connections
	// from its peers. If zero, it does not listen: it dials its peers, and
	// the kernel refuses their attempts, which BGP tolerates (RFC 4271
	// §8.2.1: either side may open the connection).
	ListenPort int
	// Logger receives peer state changes. If nil, slog.Default().
	Logger *slog.Logger
}

// Speaker is one BGP speaker: its peers and the routes it announces to
// them. Its methods may be called concurrently.
type Speaker struct {
	srv    *server.BgpServer
	log    *slog.Logger
	cancel context.CancelFunc // ends the peer-event watch

	mu     sync.Mutex
	peers  map[netip.Addr]Peer
	routes map[netip.Prefix]Route
	closed bool
}

// localOnlyPolicy names the import policy that keeps only local routes.
const localOnlyPolicy = "spooky-local-only"

// ErrClosed is returned by the methods of a closed Speaker.
var ErrClosed = errors.New("bgp speaker closed")

// Start starts a speaker with no peers and no routes.
func Start(ctx context.Context, c Config) (*Speaker, error) {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ASN == 0 {
		return nil, errors.New("bgp: local ASN is 0")
	}
	if !c.RouterID.Is4() {
		return nil, fmt.Errorf("bgp: router ID %v is not an IPv4 address (RFC 6286)", c.RouterID)
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return nil, fmt.Errorf("bgp: listen port %d out of range 0..65535", c.ListenPort)
	}
	// GoBGP logs every FSM step at info and debug; only its warnings
	// reach spooky's log, and the speaker logs peer state changes itself.
	lv := &slog.LevelVar{}
	lv.Set(slog.LevelWarn)
	log := c.Logger.With("component", "bgp")
	libLog := slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("lib", "gobgp")
	srv := server.NewBgpServer(server.LoggerOption(libLog, lv))
	go srv.Serve()
	port := int32(c.ListenPort)
	if port == 0 {
		port = -1 // GoBGP: do not listen
	}
	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        c.ASN,
		RouterId:   c.RouterID.String(),
		ListenPort: port,
	}})
	if err != nil {
		return nil, fmt.Errorf("bgp: start speaker (AS %d, router ID %s): %w", c.ASN, c.RouterID, err)
	}
	// Accept nothing from the routers: spooky originates host routes and
	// needs none back, and a peer sending a full table would otherwise
	// fill the RIB. GoBGP runs the global import policy on local paths
	// too, so the policy accepts those and rejects the rest.
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{
		Name: localOnlyPolicy,
		Statements: []*api.Statement{{
			Name:       localOnlyPolicy + "-accept-local",
			Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
		}},
	}}); err != nil {
		_ = srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		return nil, fmt.Errorf("bgp: add import policy: %w", err)
	}
	err = srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          "global",
		Direction:     api.PolicyDirection_POLICY_DIRECTION_IMPORT,
		Policies:      []*api.Policy{{Name: localOnlyPolicy}},
		DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
	}})
	if err != nil {
		_ = srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		return nil, fmt.Errorf("bgp: set import policy: %w", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	s := &Speaker{
		srv: srv, log: log, cancel: cancel,
		peers:  map[netip.Addr]Peer{},
		routes: map[netip.Prefix]Route{},
	}
	err = srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnPeerUpdate: s.logPeer}, server.WatchPeer())
	if err != nil {
		cancel()
		_ = srv.StopBgp(context.Background(), &api.StopBgpRequest{})
		return nil, fmt.Errorf("bgp: watch peers: %w", err)
	}
	log.Info("bgp speaker started", "asn", c.ASN, "router_id", c.RouterID, "listen_port", c.ListenPort)
	return s, nil
}

// logPeer logs a peer's change of session state.
func (s *Speaker) logPeer(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	st := ev.Peer.State
	attrs := []any{"peer", st.NeighborAddress, "peer_asn", st.PeerASN, "state", stateName(st.SessionState)}
	if st.DisconnectMessage != "" {
		attrs = append(attrs, "reason", st.DisconnectMessage)
	}
	s.log.Info("bgp peer", attrs...)
}

// Close withdraws every route by closing every session (a Cease
// NOTIFICATION, RFC 4486, after which the peers drop what the speaker
// announced) and stops the speaker. Callers that want routers to move
// traffic away first call Announce(nil) and wait before Close.
func (s *Speaker) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	err := s.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
	s.log.Info("bgp speaker stopped")
	if err != nil {
		return fmt.Errorf("bgp: stop speaker: %w", err)
	}
	return nil
}

// minLevel passes the records of at least min to the handler it wraps.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(as), m.min}
}

func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{m.Handler.WithGroup(name), m.min}
}
