package integration

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/test/netns"
)

// TestHealthDrivesTheRequestTier runs `spooky serve` with two pools over
// the same two backend hosts: "checked" has an http3 health check, and
// "guarded" none, so only its circuit breakers speak for it. A killed
// upstream of either leaves its pool (the checked one within the check's
// bound, the guarded one once its breaker opens), and each comes back; the
// admin API and the metrics show the breaker open and close.
func TestHealthDrivesTheRequestTier(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 2})
	cfgDir := t.TempDir()
	sock := filepath.Join(cfgDir, "admin.sock")
	const metricsAt = "127.0.0.1:9465"
	checkedAddr := func(i int) netip.AddrPort { return netip.AddrPortFrom(lab.Backends[i].IPv4, 8443) }
	guardedAddr := func(i int) netip.AddrPort { return netip.AddrPortFrom(lab.Backends[i].IPv4, 8444) }
	start := func(tb testing.TB, name string, addr netip.AddrPort, i int) *backend {
		return mustStartBackend(tb, lab.Backends[i], name, addr, cid.Config{ID: 0, ServerIDLen: 2, NonceLen: 6}, []byte{0, byte(i + 1)})
	}
	checked := []*backend{start(t, "c0", checkedAddr(0), 0), start(t, "c1", checkedAddr(1), 1)}
	guarded := []*backend{start(t, "g0", guardedAddr(0), 0), start(t, "g1", guardedAddr(1), 1)}
	listen := netip.AddrPortFrom(lab.LB.IPv4, 443)
	certs, err := filepath.Abs("../../examples/certs")
	if err != nil {
		t.Fatal(err)
	}
	up := func(a netip.AddrPort) string { return "h3://" + a.String() }
	const openFor = 2 * time.Second
	cfg := fmt.Sprintf(`log: {level: debug}
admin: {socket: %s}
metrics: {listen: %s}
services:
  - name: edge
    address: %s
    port: %d
    mode: l7
    tls:
      - {server_names: [example.test], cert: %s/example.test.crt, key: %s/example.test.key}
    routes:
      - {match: {path_prefix: /checked}, pool: checked}
      - {pool: guarded}
pools:
  - name: checked
    health_check: {type: http3, interval: %s, timeout: %s, rise: %d, fall: %d}
    upstreams:
      - {address: %q, tls: {insecure_skip_verify: true}}
      - {address: %q, tls: {insecure_skip_verify: true}}
  - name: guarded
    retries: {count: 0}
    circuit_breaker: {consecutive_failures: 3, open_for: %s}
    upstreams:
      - {address: %q, tls: {insecure_skip_verify: true}}
      - {address: %q, tls: {insecure_skip_verify: true}}
`, sock, metricsAt, listen.Addr(), listen.Port(), certs, certs,
		checkInterval, checkTimeout, checkRise, checkFall, up(checkedAddr(0)), up(checkedAddr(1)),
		openFor, up(guardedAddr(0)), up(guardedAddr(1)))
	cfgPath := filepath.Join(cfgDir, "spooky.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := mustStartDaemon(t, lab.LB, "msg=serving", "serve", "-c", cfgPath)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("spooky serve log:\n%s", d.log)
		}
	})
	client := mustHTTP3Client(t, lab.Client, lab.Client.IPv4)
	get := func(path string) (string, int) {
		resp, err := client.Get("https://" + listen.String() + path)
		if err != nil {
			return err.Error(), 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-Backend"), resp.StatusCode
	}
	scrape := func() string { return "http://" + metricsAt + "/metrics" }

	t.Run("a killed upstream of a checked pool is skipped within the check's bound and comes back", func(t *testing.T) {
		pollUntil(t, "both checked upstreams healthy", 10*time.Second, func() bool {
			st := mustAdminStatus(t, lab.LB, sock)
			return upstreamOf(st, "checked", up(checkedAddr(0))).Reason != "" && upstreamOf(st, "checked", up(checkedAddr(1))).Reason != ""
		})
		checked[1].kill()
		killed := time.Now()
		pollUntil(t, "c1 unhealthy in the admin API", 20*time.Second, func() bool {
			return upstreamOf(mustAdminStatus(t, lab.LB, sock), "checked", up(checkedAddr(1))).State == "unhealthy"
		})
		// Timed by the daemon's log, as for the packet tier: the pools
		// read the registry on every request, so the change is the event.
		out, found := logTime(d.log.String(), killed,
			"msg=\"health changed\" kind=upstream target="+up(checkedAddr(1))+" from=healthy to=unhealthy")
		if !found {
			t.Fatalf("no health change of %s in the log", up(checkedAddr(1)))
		}
		took := out.Sub(killed)
		bound := time.Duration(checkFall+1)*checkInterval*11/10 + checkTimeout
		t.Logf("killed upstream unhealthy after %s", seconds(took))
		if took > bound {
			t.Errorf("the killed upstream was taken out after %s, over the bound %s", seconds(took), seconds(bound))
		}
		for i := range 10 {
			if b, code := get("/checked"); code != http.StatusOK || b != "c0" {
				t.Errorf("request %d after c1 was taken out: %d from %q, want 200 from c0", i, code, b)
			}
		}
		checked[1] = start(t, "c1", checkedAddr(1), 1)
		pollUntil(t, "c1 healthy again", 10*time.Second, func() bool {
			return upstreamOf(mustAdminStatus(t, lab.LB, sock), "checked", up(checkedAddr(1))).State == "healthy"
		})
		seen := map[string]int{}
		for range 10 {
			b, _ := get("/checked")
			seen[b]++
		}
		if seen["c0"] != 5 || seen["c1"] != 5 {
			t.Errorf("after c1 came back the pool answered %v, want c0 and c1 5 times each", seen)
		}
	})

	t.Run("a guarded upstream's breaker opens and closes, in the admin API and the metrics", func(t *testing.T) {
		guarded[1].kill()
		g1 := up(guardedAddr(1))
		failed := 0
		pollUntil(t, "g1's breaker open", 20*time.Second, func() bool {
			if _, code := get("/"); code != http.StatusOK {
				failed++
			}
			u := upstreamOf(mustAdminStatus(t, lab.LB, sock), "guarded", g1)
			return u.Breaker == "open" && u.State == "unhealthy" && u.Source == "passive"
		})
		if failed < 3 {
			t.Errorf("%d requests failed before the breaker opened, want at least consecutive_failures = 3", failed)
		}
		fams := mustScrape(t, lab.LB, scrape())
		if v := mustMetric(t, fams, "spooky_l7_upstream_breaker_state", map[string]string{"upstream": g1, "state": "open"}); v != 1 {
			t.Errorf("breaker state open of %s = %v, want 1", g1, v)
		}
		for i := range 6 {
			if b, code := get("/"); code != http.StatusOK || b != "g0" {
				t.Errorf("request %d with g1's breaker open: %d from %q, want 200 from g0", i, code, b)
			}
		}
		guarded[1] = start(t, "g1", guardedAddr(1), 1)
		pollUntil(t, "g1's breaker closed", openFor+15*time.Second, func() bool {
			get("/") // the half-open probe is a request
			u := upstreamOf(mustAdminStatus(t, lab.LB, sock), "guarded", g1)
			return u.Breaker == "closed" && u.State == "healthy"
		})
		fams = mustScrape(t, lab.LB, scrape())
		if v := mustMetric(t, fams, "spooky_l7_upstream_breaker_state", map[string]string{"upstream": g1, "state": "closed"}); v != 1 {
			t.Errorf("breaker state closed of %s = %v, want 1", g1, v)
		}
		if v := mustMetric(t, fams, "spooky_l7_requests_total", map[string]string{"service": "edge", "pool": "guarded", "upstream": g1, "code": "2xx"}); v < 1 {
			t.Errorf("2xx requests to %s counted %v, want at least the half-open probe", g1, v)
		}
	})
}
