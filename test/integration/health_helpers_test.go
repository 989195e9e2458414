package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/test/netns"
)

// mustAdminStatus runs `spooky status --json` against socket in host h.
func mustAdminStatus(tb testing.TB, h *netns.Host, socket string) *admin.Status {
	tb.Helper()
	out, errOut, code := runSpooky(tb, h, "status", "--admin", socket, "--json")
	if code != 0 {
		tb.Fatalf("spooky status: exit %d: %s%s", code, out, errOut)
	}
	var st admin.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		tb.Fatalf("spooky status --json: %v\n%s", err, out)
	}
	return &st
}

// backendHealth returns the state of backend name of service in st.
func backendHealth(st *admin.Status, service, name string) admin.Health {
	for _, s := range st.Services {
		if s.Name != service {
			continue
		}
		for _, b := range s.Backends {
			if b.Name == name {
				return b.Health
			}
		}
	}
	return admin.Health{State: "absent"}
}

// upstreamOf returns upstream name of pool in st.
func upstreamOf(st *admin.Status, pool, name string) admin.Upstream {
	for _, p := range st.Pools {
		if p.Name != pool {
			continue
		}
		for _, u := range p.Upstreams {
			if u.Name == name {
				return u
			}
		}
	}
	return admin.Upstream{Health: admin.Health{State: "absent"}}
}

// pollUntil polls cond every 20 ms until it holds, up to limit, and
// returns how long that took; it fails the test past the limit.
func pollUntil(tb testing.TB, what string, limit time.Duration, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			tb.Fatalf("not within %s: %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// hostHTTPClient returns a client whose TCP connections are made inside
// host h's network namespace (the socket keeps its namespace after).
func hostHTTPClient(h *netns.Host) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := h.Do(func() error {
					var err error
					c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
	}
}

// mustScrape fetches the daemon's metrics at url from host h and parses
// them with the Prometheus text parser.
func mustScrape(tb testing.TB, h *netns.Host, url string) map[string]*dto.MetricFamily {
	tb.Helper()
	resp, err := hostHTTPClient(h).Get(url)
	if err != nil {
		tb.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		tb.Fatalf("scrape %s: %s: %s", url, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatalf("parse the scrape of %s: %v", url, err)
	}
	return fams
}

// metricValue returns the value of the series of family name whose labels
// include want, and whether there is one.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// mustMetric is metricValue that fails the test when the series is absent.
func mustMetric(tb testing.TB, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	tb.Helper()
	v, ok := metricValue(fams, name, want)
	if !ok {
		tb.Fatalf("no series %s%v in the scrape", name, want)
	}
	return v
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// mustReadFile returns the file's contents.
func mustReadFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
