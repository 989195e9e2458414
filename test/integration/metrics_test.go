package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spooky-lb/spooky/forwarder"
	"github.com/spooky-lb/spooky/metrics"
	"github.com/spooky-lb/spooky/test/netns"
)

// TestMetricsExportTheXDPCountersOfRealTraffic sends QUIC requests
// through the XDP balancer, then scrapes metrics whose XDP reader is
// `spooky stats --json` on the load balancer (its pins live in that
// host's mount namespace): every counter the read summed over CPUs must
// appear in the scrape under the configured names.
func TestMetricsExportTheXDPCountersOfRealTraffic(t *testing.T) {
	x := mustXDPLab(t, "l2dsr")
	for _, vip := range []netip.AddrPort{x.vip4, x.vip6} {
		if r := mustRunClient(t, x.Client, vip, 30, 2); r.OK == 0 {
			t.Fatalf("no request to %s succeeded: %+v", vip, r)
		}
	}
	spooky := mustBuild(t, "spooky")
	var mu sync.Mutex
	var read *forwarder.Stats // what the scrape's read returned
	m := metrics.New(metrics.Options{XDPStats: func() (*forwarder.Stats, error) {
		st, err := readStats(x.LB, spooky)
		mu.Lock()
		read = st
		mu.Unlock()
		return st, err
	}})
	fams := mustScrapeMetrics(t, m)
	mu.Lock()
	st := read
	mu.Unlock()
	if st == nil {
		t.Fatal("the scrape did not read the XDP counters")
	}
	if got := value(fams, "spooky_xdp_up", nil); got != 1 {
		t.Fatalf("spooky_xdp_up = %v, want 1", got)
	}

	t.Run("every backend's forwarded packets are exported under its service and name", func(t *testing.T) {
		named := 0
		for _, b := range st.Backends {
			svc, be, ok := strings.Cut(b.Name, "/")
			if !ok {
				continue
			}
			named++
			labels := map[string]string{"service": svc, "backend": be}
			if got := value(fams, "spooky_xdp_backend_packets_total", labels); got != float64(b.Packets) {
				t.Errorf("%s packets = %v, want %d", b.Name, got, b.Packets)
			}
			if got := value(fams, "spooky_xdp_backend_bytes_total", labels); got != float64(b.Bytes) {
				t.Errorf("%s bytes = %v, want %d", b.Name, got, b.Bytes)
			}
			if b.Packets == 0 {
				t.Errorf("%s forwarded nothing; the client's connections should reach every backend", b.Name)
			}
		}
		if want := 2 * len(x.Backends); named != want {
			t.Errorf("%d named backends in the stats, want %d (each backend in web4 and web6)", named, want)
		}
	})
	t.Run("each VIP's paths sum to its forwarded packets", func(t *testing.T) {
		for _, v := range st.VIPs {
			if v.Service == "" || v.Packets == 0 {
				t.Errorf("VIP %s: service %q, %d packets; want a named service that forwarded", v.Address, v.Service, v.Packets)
			}
			var sum float64
			for _, path := range []string{"cid", "cid_cache", "flow", "maglev"} {
				sum += value(fams, "spooky_xdp_vip_packets_total", map[string]string{"service": v.Service, "vip": v.Address.String(), "path": path})
			}
			if sum != float64(v.Packets) {
				t.Errorf("VIP %s: paths sum to %v, want %d", v.Address, sum, v.Packets)
			}
		}
	})
	t.Run("every reason is exported once, as a verdict or an event", func(t *testing.T) {
		for reason, n := range st.Reasons {
			var found []float64
			for _, f := range []string{"spooky_xdp_packets_total", "spooky_xdp_events_total"} {
				for _, mt := range fams[f].GetMetric() {
					for _, lp := range mt.GetLabel() {
						if (lp.GetName() == "reason" || lp.GetName() == "event") && lp.GetValue() == reason {
							found = append(found, mt.GetCounter().GetValue())
						}
					}
				}
			}
			if len(found) != 1 || found[0] != float64(n) {
				t.Errorf("reason %s: exported as %v, want once with %d", reason, found, n)
			}
		}
		if value(fams, "spooky_xdp_packets_total", map[string]string{"verdict": "tx", "reason": "tx"}) == 0 {
			t.Error("no packet counted as forwarded (tx)")
		}
	})
}

// readStats runs `spooky stats --json` in host h, without failing the
// test: it runs on the scrape's goroutine.
func readStats(h *netns.Host, spooky string) (*forwarder.Stats, error) {
	out, err := h.Command(spooky, "stats", "--json", h.Iface).Output()
	if err != nil {
		return nil, fmt.Errorf("spooky stats: %w", err)
	}
	var st forwarder.Stats
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, fmt.Errorf("decode spooky stats: %w", err)
	}
	return &st, nil
}

// mustScrapeMetrics scrapes m's handler over HTTP and parses the text.
func mustScrapeMetrics(tb testing.TB, m *metrics.Metrics) map[string]*dto.MetricFamily {
	tb.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		tb.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read scrape: %v", err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		tb.Fatalf("parse scrape: %v\n%s", err, body)
	}
	return fams
}

// value returns the counter or gauge of family name with exactly labels,
// or -1 if there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	for _, mt := range fams[name].GetMetric() {
		if len(mt.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, lp := range mt.GetLabel() {
			if labels[lp.GetName()] != lp.GetValue() {
				match = false
			}
		}
		if match {
			if c := mt.GetCounter(); c != nil {
				return c.GetValue()
			}
			return mt.GetGauge().GetValue()
		}
	}
	return -1
}
