package metrics

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// exportedNames are every spooky_* family the package exports. A metric
// added without a line here fails TestExportedNames, so the dashboard
// check below knows every name.
var exportedNames = []string{
	"spooky_bgp_peer_up",
	"spooky_bgp_route_announced",
	"spooky_build_info",
	"spooky_config_info",
	"spooky_config_last_reload_success_timestamp_seconds",
	"spooky_config_last_reload_successful",
	"spooky_config_reloads_total",
	"spooky_health_check_duration_seconds",
	"spooky_health_checks_total",
	"spooky_l7_open_connections",
	"spooky_l7_open_tunnels",
	"spooky_l7_request_duration_seconds",
	"spooky_l7_requests_total",
	"spooky_l7_tunnel_bytes_total",
	"spooky_l7_tunnels_total",
	"spooky_l7_upstream_breaker_state",
	"spooky_target_health",
	"spooky_target_health_since_timestamp_seconds",
	"spooky_xdp_backend_bytes_total",
	"spooky_xdp_backend_packets_total",
	"spooky_xdp_backend_state",
	"spooky_xdp_events_total",
	"spooky_xdp_packets_total",
	"spooky_xdp_up",
	"spooky_xdp_vip_bytes_total",
	"spooky_xdp_vip_packets_total",
}

func TestExportedNames(t *testing.T) {
	fams := mustScrape(t, mustPopulated(t).m)
	var got []string
	for name := range fams {
		if strings.HasPrefix(name, namespace+"_") {
			got = append(got, name)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, exportedNames) {
		t.Errorf("exported spooky_* families:\n%v\nwant:\n%v", got, exportedNames)
	}
	t.Run("the Go runtime and process collectors are registered", func(t *testing.T) {
		for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
			if _, ok := fams[name]; !ok {
				t.Errorf("no %s", name)
			}
		}
	})
}

// seriesNames returns the sample names a family produces: a histogram's
// _bucket, _sum and _count, or the family's own name.
func seriesNames(f *dto.MetricFamily) []string {
	if f.GetType() == dto.MetricType_HISTOGRAM {
		return []string{f.GetName() + "_bucket", f.GetName() + "_sum", f.GetName() + "_count"}
	}
	return []string{f.GetName()}
}

func TestNamesFollowPrometheusConventions(t *testing.T) {
	m := mustPopulated(t).m
	problems, err := testutil.GatherAndLint(m.reg, exportedNames...)
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	fams := mustScrape(t, m)
	for _, name := range exportedNames {
		f := fams[name]
		t.Run(name+" has a unit or _total that matches its type", func(t *testing.T) {
			switch {
			case f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total"):
				t.Error("a counter not ending in _total")
			case f.GetType() != dto.MetricType_COUNTER && strings.HasSuffix(name, "_total"):
				t.Errorf("a %v ending in _total", f.GetType())
			case f.GetType() == dto.MetricType_HISTOGRAM && !strings.HasSuffix(name, "_seconds"):
				t.Error("a histogram not in seconds")
			case strings.Contains(name, "timestamp") && !strings.HasSuffix(name, "_timestamp_seconds"):
				t.Error("a timestamp not in seconds")
			}
			if f.GetHelp() == "" {
				t.Error("no help text")
			}
		})
	}
}

// TestPromtoolAcceptsTheScrape runs Prometheus's own checker over a full
// scrape. promtool comes with Debian's prometheus package.
func TestPromtoolAcceptsTheScrape(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH (apt-get install prometheus provides it)")
	}
	text := mustScrapeText(t, mustPopulated(t).m)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
