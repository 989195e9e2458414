package metrics

import (
	"encoding/json"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboardPath is the Grafana dashboard shipped in deploy/.
const dashboardPath = "../deploy/grafana/spooky-dashboard.json"

// promQL is one PromQL expression of the dashboard and where it is.
type promQL struct{ where, expr string }

// mustDashboard parses the dashboard and returns it with every query it
// holds: panel targets, annotations and template variables.
func mustDashboard(tb testing.TB) (map[string]any, []promQL) {
	tb.Helper()
	raw, err := os.ReadFile(dashboardPath)
	if err != nil {
		tb.Fatalf("read dashboard: %v", err)
	}
	var d map[string]any
	if err := json.Unmarshal(raw, &d); err != nil {
		tb.Fatalf("parse %s: %v", dashboardPath, err)
	}
	var out []promQL
	var walk func(where string, v any)
	walk = func(where string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if t, ok := v["title"].(string); ok {
				where = t
			} else if n, ok := v["name"].(string); ok {
				where = n
			}
			for _, k := range []string{"expr", "definition"} {
				if s, ok := v[k].(string); ok {
					out = append(out, promQL{where, s})
				}
			}
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(where, v[k])
			}
		case []any:
			for _, e := range v {
				walk(where, e)
			}
		}
	}
	walk("dashboard", d)
	return d, out
}

// metricNameRE finds spooky's metric names in PromQL.
var metricNameRE = regexp.MustCompile(`\bspooky_[a-zA-Z0-9_]+`)

func TestDashboardRefersOnlyToExportedMetrics(t *testing.T) {
	_, queries := mustDashboard(t)
	if len(queries) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	exported := map[string]bool{}
	for _, f := range mustScrape(t, mustPopulated(t).m) {
		for _, n := range seriesNames(f) {
			exported[n] = true
		}
	}
	used := map[string]bool{}
	for _, q := range queries {
		names := metricNameRE.FindAllString(q.expr, -1)
		if len(names) == 0 && !strings.Contains(q.where, "Data source") {
			t.Errorf("%s: %q names no spooky metric", q.where, q.expr)
		}
		for _, n := range names {
			used[n] = true
			if !exported[n] {
				t.Errorf("%s: %q refers to %s, which the package does not export", q.where, q.expr, n)
			}
		}
	}
	t.Run("every panel the operators need is there", func(t *testing.T) {
		for _, n := range []string{
			"spooky_xdp_vip_packets_total", "spooky_xdp_backend_packets_total", "spooky_xdp_packets_total",
			"spooky_l7_requests_total", "spooky_l7_request_duration_seconds_bucket",
			"spooky_target_health", "spooky_l7_upstream_breaker_state", "spooky_config_reloads_total",
		} {
			if !used[n] {
				t.Errorf("no query uses %s", n)
			}
		}
	})
}

func TestDashboardPanelsAreWellFormed(t *testing.T) {
	d, _ := mustDashboard(t)
	if d["uid"] == "" || d["title"] == "" {
		t.Error("the dashboard has no uid or title")
	}
	ids := map[float64]string{}
	panels, _ := d["panels"].([]any)
	for _, p := range panels {
		p := p.(map[string]any)
		title, _ := p["title"].(string)
		t.Run(title+" is well formed", func(t *testing.T) {
			id, _ := p["id"].(float64)
			if other, dup := ids[id]; dup {
				t.Errorf("id %v is also %q's", id, other)
			}
			ids[id] = title
			if p["type"] == "row" {
				return
			}
			if desc, _ := p["description"].(string); desc == "" {
				t.Error("no description")
			}
			targets, _ := p["targets"].([]any)
			if len(targets) == 0 {
				t.Fatal("no targets")
			}
			for _, tg := range targets {
				tg := tg.(map[string]any)
				if expr, _ := tg["expr"].(string); expr == "" {
					t.Error("a target without an expression")
				}
				if ds, _ := tg["datasource"].(map[string]any); ds["uid"] != "${datasource}" {
					t.Errorf("a target's data source is %v, want the dashboard's ${datasource} variable", ds)
				}
			}
		})
	}
}
