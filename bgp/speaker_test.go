package bgp

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Two GoBGP instances in one process, on loopback: a Speaker (AS 65001)
// dials a plain GoBGP server playing the router (AS 65000), which accepts
// every route, so its RIB shows what the speaker announced.

const (
	speakerASN = 65001
	routerASN  = 65000
)

var (
	lo4 = netip.MustParseAddr("127.0.0.1")
	lo6 = netip.MustParseAddr("::1")
)

// testRouter is a GoBGP server that accepts the speaker's sessions.
type testRouter struct {
	srv  *server.BgpServer
	port int
}

// mustRouter starts a router listening on loopback with the given peers
// (passive: the speaker dials) and password.
func mustRouter(tb testing.TB, password string, peers ...netip.Addr) *testRouter {
	tb.Helper()
	port := freePort(tb)
	srv := server.NewBgpServer(server.LoggerOption(slog.New(slog.DiscardHandler), &slog.LevelVar{}))
	go srv.Serve()
	err := srv.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
		Asn: routerASN, RouterId: "192.0.2.254", ListenPort: int32(port),
		ListenAddresses: []string{"127.0.0.1", "::1"},
	}})
	if err != nil {
		tb.Fatalf("start router: %v", err)
	}
	tb.Cleanup(func() { _ = srv.StopBgp(context.Background(), &api.StopBgpRequest{}) })
	for _, p := range peers {
		err := srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: p.String(), PeerAsn: speakerASN, AuthPassword: password},
			Transport: &api.Transport{PassiveMode: true},
		}})
		if err != nil {
			tb.Fatalf("router: add peer %s: %v", p, err)
		}
	}
	return &testRouter{srv: srv, port: port}
}

// freePort returns a TCP port free on both loopback addresses just now.
func freePort(tb testing.TB) int {
	tb.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port))
		l.Close()
		if err == nil {
			l6.Close()
			return port
		}
	}
	tb.Fatal("no TCP port free on 127.0.0.1 and ::1")
	return 0
}

// learned is one route in the router's RIB.
type learned struct {
	prefix      netip.Prefix
	nextHop     netip.Addr
	communities []uint32
	med         uint32
	hasMED      bool
}

// rib returns what the router learned, by prefix.
func (r *testRouter) rib(tb testing.TB) map[netip.Prefix]learned {
	tb.Helper()
	out := map[netip.Prefix]learned{}
	for _, f := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		err := r.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: f},
			func(nlri bgp.NLRI, paths []*apiutil.Path) {
				for _, p := range paths {
					pfx := netip.MustParsePrefix(nlri.String())
					l := learned{prefix: pfx}
					for _, a := range p.Attrs {
						switch a := a.(type) {
						case *bgp.PathAttributeNextHop:
							l.nextHop = a.Value
						case *bgp.PathAttributeMpReachNLRI:
							l.nextHop = a.Nexthop
						case *bgp.PathAttributeCommunities:
							l.communities = a.Value
						case *bgp.PathAttributeMultiExitDisc:
							l.med, l.hasMED = a.Value, true
						}
					}
					out[pfx] = l
				}
			})
		if err != nil {
			tb.Fatalf("router: list %v paths: %v", f, err)
		}
	}
	return out
}

// mustWaitRIB polls the router's RIB until ok accepts it.
func (r *testRouter) mustWaitRIB(tb testing.TB, what string, ok func(map[netip.Prefix]learned) bool) map[netip.Prefix]learned {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rib := r.rib(tb)
		if ok(rib) {
			return rib
		}
		if time.Now().After(deadline) {
			tb.Fatalf("router RIB did not reach %s in 20s: %v", what, rib)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustStart(tb testing.TB, c Config) *Speaker {
	tb.Helper()
	c.Logger = slog.New(slog.DiscardHandler)
	s, err := Start(context.Background(), c)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSpeakerAnnouncesAndWithdrawsHostRoutesOfBothFamilies(t *testing.T) {
	r := mustRouter(t, "", lo4, lo6)
	s := mustStart(t, Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1")})
	if err := s.SetPeers(context.Background(), []Peer{
		{Address: lo4, ASN: routerASN, Port: r.port, HoldTime: 3 * time.Second},
		{Address: lo6, ASN: routerASN, Port: r.port, HoldTime: 3 * time.Second},
	}); err != nil {
		t.Fatal(err)
	}
	vip4 := HostRoute(netip.MustParseAddr("198.18.0.10"))
	vip4b := HostRoute(netip.MustParseAddr("198.18.0.20"))
	vip6 := HostRoute(netip.MustParseAddr("2001:db8::a"))
	const comm = 65001<<16 | 100 // 65001:100
	routes := []Route{
		{Prefix: vip4, Communities: []uint32{comm}, MED: 10, HasMED: true},
		{Prefix: vip4b},
		{Prefix: vip6},
	}
	if err := s.Announce(routes); err != nil {
		t.Fatal(err)
	}

	t.Run("the router learns every route with the session's local address as next hop", func(t *testing.T) {
		rib := r.mustWaitRIB(t, "three routes", func(m map[netip.Prefix]learned) bool { return len(m) == 3 })
		if got := rib[vip4]; got.nextHop != lo4 || !slices.Equal(got.communities, []uint32{comm}) || !got.hasMED || got.med != 10 {
			t.Errorf("%s learned as %+v, want next hop %s, community 65001:100, MED 10", vip4, got, lo4)
		}
		if got := rib[vip4b]; got.nextHop != lo4 || got.hasMED || len(got.communities) != 0 {
			t.Errorf("%s learned as %+v, want next hop %s and no MED or communities", vip4b, got, lo4)
		}
		if got := rib[vip6]; got.nextHop != lo6 {
			t.Errorf("%s learned with next hop %s, want %s", vip6, got.nextHop, lo6)
		}
	})

	t.Run("a peer with a hold time BGP does not allow is refused", func(t *testing.T) {
		for _, hold := range []time.Duration{0, 2 * time.Second, 3500 * time.Millisecond} {
			if err := s.SetPeers(context.Background(), []Peer{{Address: lo4, ASN: routerASN, Port: r.port, HoldTime: hold}}); err == nil {
				t.Errorf("SetPeers with hold time %v succeeded", hold)
			}
		}
	})

	t.Run("peers report established sessions with the negotiated hold time", func(t *testing.T) {
		ps, err := s.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 2 {
			t.Fatalf("Peers() = %+v, want 2", ps)
		}
		for _, p := range ps {
			// The router proposes 90 s; the smaller one wins (RFC 4271 §4.2).
			if p.State != Established || p.HoldTime != 3*time.Second || p.ASN != routerASN || p.Since.IsZero() {
				t.Errorf("peer %+v: want established, hold time 3s, AS %d, a time since", p, routerASN)
			}
		}
		if ps[0].Advertised != 2 || ps[1].Advertised != 1 {
			t.Errorf("advertised %d routes to %s and %d to %s, want 2 and 1", ps[0].Advertised, ps[0].Address, ps[1].Advertised, ps[1].Address)
		}
	})

	t.Run("a route left out is withdrawn and a changed one replaced", func(t *testing.T) {
		next := []Route{{Prefix: vip4, MED: 20, HasMED: true}, {Prefix: vip6}}
		if err := s.Announce(next); err != nil {
			t.Fatal(err)
		}
		rib := r.mustWaitRIB(t, "vip4b withdrawn and vip4 at MED 20", func(m map[netip.Prefix]learned) bool {
			_, gone := m[vip4b]
			return !gone && len(m) == 2 && m[vip4].med == 20
		})
		if c := rib[vip4].communities; len(c) != 0 {
			t.Errorf("%s still carries communities %v after they were removed", vip4, c)
		}
		if got := s.Routes(); len(got) != 2 || got[0].Prefix != vip4 || got[1].Prefix != vip6 {
			t.Errorf("Routes() = %v, want %s and %s", got, vip4, vip6)
		}
	})

	t.Run("announcing nothing withdraws everything and keeps the sessions", func(t *testing.T) {
		if err := s.Announce(nil); err != nil {
			t.Fatal(err)
		}
		r.mustWaitRIB(t, "empty", func(m map[netip.Prefix]learned) bool { return len(m) == 0 })
		ps, err := s.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.State != Established {
				t.Errorf("peer %s is %s after a withdrawal, want established", p.Address, p.State)
			}
		}
	})

	t.Run("routes announced again return, and Close withdraws them with the sessions", func(t *testing.T) {
		if err := s.Announce(routes); err != nil {
			t.Fatal(err)
		}
		r.mustWaitRIB(t, "three routes", func(m map[netip.Prefix]learned) bool { return len(m) == 3 })
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		r.mustWaitRIB(t, "empty", func(m map[netip.Prefix]learned) bool { return len(m) == 0 })
		if err := s.Announce(routes); err != ErrClosed {
			t.Errorf("Announce after Close = %v, want ErrClosed", err)
		}
	})
}

func TestSpeakerSignsSessionsWithTCPMD5(t *testing.T) {
	r := mustRouter(t, "s3cret", lo4)
	s := mustStart(t, Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1")})
	if err := s.SetPeers(context.Background(), []Peer{{Address: lo4, ASN: routerASN, Port: r.port, HoldTime: 9 * time.Second, Password: "s3cret"}}); err != nil {
		t.Fatal(err)
	}
	vip := HostRoute(netip.MustParseAddr("198.18.0.10"))
	if err := s.Announce([]Route{{Prefix: vip}}); err != nil {
		t.Fatal(err)
	}
	r.mustWaitRIB(t, vip.String(), func(m map[netip.Prefix]learned) bool { _, ok := m[vip]; return ok })
}

func TestSetPeersRemovesPeersNoLongerListed(t *testing.T) {
	r := mustRouter(t, "", lo4)
	s := mustStart(t, Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1")})
	peer := Peer{Address: lo4, ASN: routerASN, Port: r.port, HoldTime: 9 * time.Second}
	if err := s.SetPeers(context.Background(), []Peer{peer}); err != nil {
		t.Fatal(err)
	}
	vip := HostRoute(netip.MustParseAddr("198.18.0.10"))
	if err := s.Announce([]Route{{Prefix: vip}}); err != nil {
		t.Fatal(err)
	}
	r.mustWaitRIB(t, vip.String(), func(m map[netip.Prefix]learned) bool { return len(m) == 1 })
	if err := s.SetPeers(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	r.mustWaitRIB(t, "empty", func(m map[netip.Prefix]learned) bool { return len(m) == 0 })
	if ps, _ := s.Peers(context.Background()); len(ps) != 0 {
		t.Errorf("Peers() = %+v after removing every peer", ps)
	}
}

func TestAnnounceRefusesBadRoutes(t *testing.T) {
	s := mustStart(t, Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1")})
	vip := HostRoute(netip.MustParseAddr("198.18.0.10"))
	for name, routes := range map[string][]Route{
		"a prefix with host bits":      {{Prefix: netip.MustParsePrefix("198.18.0.10/24")}},
		"a next hop of another family": {{Prefix: vip, NextHop: lo6}},
		"a prefix listed twice":        {{Prefix: vip}, {Prefix: vip}},
	} {
		if err := s.Announce(routes); err == nil {
			t.Errorf("Announce(%s) succeeded", name)
		}
	}
	if got := s.Routes(); len(got) != 0 {
		t.Errorf("Routes() = %v after refused announcements", got)
	}
}

func TestCommunitiesFormatAsASNColonValue(t *testing.T) {
	for c, want := range map[uint32]string{0: "0:0", 65001<<16 | 100: "65001:100", 0xffffffff: "65535:65535"} {
		if got := FormatCommunity(c); got != want {
			t.Errorf("FormatCommunity(%#x) = %q, want %q", c, got, want)
		}
	}
}

func TestGoBGPLogsOnlyWarningsIntoTheSpeakersLog(t *testing.T) {
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := mustRouter(t, "", lo4)
	s, err := Start(context.Background(), Config{ASN: speakerASN, RouterID: netip.MustParseAddr("192.0.2.1"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetPeers(context.Background(), []Peer{{Address: lo4, ASN: routerASN, Port: r.port, HoldTime: 9 * time.Second}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(buf.String(), "state=established") {
		if time.Now().After(deadline) {
			t.Fatalf("no established session logged in 20s:\n%s", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if strings.Contains(line, "lib=gobgp") && !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
			t.Errorf("GoBGP's own line below warning: %s", line)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
