package metrics

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spooky-lb/spooky/forwarder"
)

func TestProxyMetricsExportTheProxyCounters(t *testing.T) {
	st := &forwarder.ProxyStats{
		Events:      map[string]uint64{"from_clients": 10, "drop_session_table_full": 2},
		Reasons:     map[string]uint64{"tx": 8, "drop_not_quic_strict": 2},
		Sessions:    3,
		MaxSessions: 100,
		Backends: []forwarder.ProxyBackendStats{{
			Service: "game", Name: "g1", Address: netip.MustParseAddrPort("198.18.4.1:9443"),
			Packets: 8, Replies: 7, Sessions: 3,
		}},
	}
	m := New(Options{ProxyStats: func() *forwarder.ProxyStats { return st }})
	fams := mustScrape(t, m)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"spooky_proxy_events_total", l("event", "from_clients"), 10},
		{"spooky_proxy_events_total", l("event", "drop_session_table_full"), 2},
		{"spooky_proxy_decisions_total", l("reason", "drop_not_quic_strict"), 2},
		{"spooky_proxy_sessions", nil, 3},
		{"spooky_proxy_sessions_max", nil, 100},
		{"spooky_proxy_backend_packets_total", l("service", "game", "backend", "g1", "direction", "to_backend"), 8},
		{"spooky_proxy_backend_packets_total", l("service", "game", "backend", "g1", "direction", "from_backend"), 7},
		{"spooky_proxy_backend_sessions", l("service", "game", "backend", "g1"), 3},
	} {
		if got := mustValue(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	problems, err := testutil.GatherAndLint(m.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
