package metrics

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// grafanaVars are what Grafana puts for the dashboard's variables when
// "All" is chosen.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m", "$job", ".*", "$instance", ".*", "$service", ".*")

// TestDashboardQueriesRunInPrometheus has a real Prometheus scrape a
// metrics server fed with known data and evaluates every panel's query:
// each must parse and return series (annotations must parse). It needs
// the prometheus binary (Debian's prometheus package).
func TestDashboardQueriesRunInPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not on PATH (apt-get install prometheus provides it)")
	}
	srv := mustServe(t, mustPopulated(t).m, "/metrics", nil)
	api := mustStartPrometheus(t, bin, srv.Addr().String())

	_, queries := mustDashboard(t)
	deadline := time.Now().Add(30 * time.Second)
	for _, q := range queries {
		if strings.HasPrefix(q.expr, "label_values(") || q.where == "Data source" {
			continue // Grafana's variable syntax, not PromQL
		}
		expr := grafanaVars.Replace(q.expr)
		annotation := q.where == "Config reloads" && strings.HasPrefix(expr, "changes(")
		t.Run(q.where+": "+expr, func(t *testing.T) {
			for {
				series, err := promQuery(api, expr)
				if err != nil {
					t.Fatalf("query: %v", err)
				}
				if len(series) > 0 || annotation {
					checkStateCodes(t, q.where, series)
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("no series before the deadline")
				}
				time.Sleep(200 * time.Millisecond) // poll: rates need two scrapes
			}
		})
	}
}

// mustStartPrometheus runs Prometheus scraping target every second and
// returns its base URL once it is ready; it is killed when the test ends.
func mustStartPrometheus(tb testing.TB, bin, target string) string {
	tb.Helper()
	dir := tb.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: spooky\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	// Prometheus does not report a port it picked, so pick one here.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start prometheus: %v", err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if cmd.ProcessState != nil || time.Now().After(deadline) {
			tb.Fatalf("prometheus not ready:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stateCodes are what the state-timeline panels must show, by the label
// that names the row: the one-hot series folded into one code each.
var stateCodes = map[string]struct {
	label string
	want  map[string]string
}{
	"Circuit breakers": {"upstream", map[string]string{"198.18.2.1:8080": "2", "198.18.2.2:8080": "0"}},
	"Target health":    {"target", map[string]string{"b1": "0", "b2": "1", "198.18.2.1:8080": "2"}},
}

// checkStateCodes checks the values of a state-timeline panel's query
// against the fixture's states.
func checkStateCodes(t *testing.T, panel string, series []promSeries) {
	t.Helper()
	want, ok := stateCodes[panel]
	if !ok {
		return
	}
	got := map[string]string{}
	for _, s := range series {
		got[s.Metric[want.label]] = s.Value[1].(string)
	}
	if !maps.Equal(got, want.want) {
		t.Errorf("%s shows %v, want %v", panel, got, want.want)
	}
}

// promSeries is one series of an instant vector.
type promSeries struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"` // timestamp, value as a string
}

// promQuery evaluates expr now and returns its series (one, unlabelled,
// for a scalar).
func promQuery(base, expr string) ([]promSeries, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode answer: %w", err)
	}
	if r.Status != "success" {
		return nil, errors.New(r.Error)
	}
	if r.Data.ResultType != "vector" {
		return []promSeries{{}}, nil
	}
	var series []promSeries
	if err := json.Unmarshal(r.Data.Result, &series); err != nil {
		return nil, fmt.Errorf("decode vector: %w", err)
	}
	return series, nil
}
