package metrics

import (
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/spooky-lb/spooky/l7"
)

// The request tier finds the tunnel counters by asserting its Observer.
var _ l7.TunnelObserver = (*Metrics)(nil)

func TestTunnelsAreCounted(t *testing.T) {
	fams := mustScrape(t, mustPopulated(t).m)
	wantType(t, fams, "spooky_l7_open_tunnels", dto.MetricType_GAUGE)
	wantType(t, fams, "spooky_l7_tunnels_total", dto.MetricType_COUNTER)
	wantType(t, fams, "spooky_l7_tunnel_bytes_total", dto.MetricType_COUNTER)
	chat := l("service", "api", "route", "chat", "kind", "websocket")
	for _, tc := range []struct {
		name, metric string
		labels       map[string]string
		want         float64
	}{
		{"a closed tunnel leaves the open gauge", "spooky_l7_open_tunnels", chat, 1},
		{"every tunnel opened is counted", "spooky_l7_tunnels_total", chat, 2},
		{"bytes from the client count up", "spooky_l7_tunnel_bytes_total", l("service", "api", "route", "chat", "kind", "websocket", "direction", "up"), 100},
		{"bytes to the client count down", "spooky_l7_tunnel_bytes_total", l("service", "api", "route", "chat", "kind", "websocket", "direction", "down"), 250},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustValue(t, fams, tc.metric, tc.labels); got != tc.want {
				t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
			}
		})
	}
}
