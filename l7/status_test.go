package l7

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/health"
)

func TestUpstreamStatus(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	shared := mustUpstream(t, ProtoH1, "shared", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/hold") {
			arrived <- struct{}{}
			<-release
		}
		io.WriteString(w, "shared")
	}))
	solo := mustUpstream(t, ProtoH1, "solo", nil)
	dead := UpstreamConfig{Name: "dead", Address: deadAddress(t)}
	cfg := oneService(t, cert, PoolConfig{Name: "a", Upstreams: []UpstreamConfig{shared}},
		Route{Match: Match{PathPrefix: "/a"}, Pool: "a"},
		Route{Match: Match{PathPrefix: "/b"}, Pool: "b"},
		Route{Match: Match{PathPrefix: "/c"}, Pool: "c"},
	)
	cfg.Pools = append(cfg.Pools,
		PoolConfig{Name: "b", Upstreams: []UpstreamConfig{solo, shared}},
		PoolConfig{Name: "c", Upstreams: []UpstreamConfig{dead}, Breaker: BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Hour}},
	)
	reg := health.NewRegistry(nil)
	cfg.Health = reg.Upstreams()
	s := mustServer(t, cfg)
	c, _ := h3Client(t, cert, mustAddr(t, s))

	mustGet(t, c, "https://app.example.com/a/x")
	reg.Report(health.Upstream("solo"), health.Operator, health.Draining, "drained")
	mustGet(t, c, "https://app.example.com/b/x") // solo is drained: shared answers
	if res, _ := mustGet(t, c, "https://app.example.com/c/x"); res.StatusCode != 502 {
		t.Fatalf("status %d from a dead upstream, want 502", res.StatusCode)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if res, err := c.Get("https://app.example.com/a/hold"); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}()
	<-arrived

	byName := map[string]UpstreamStatus{}
	var names []string
	for _, st := range s.UpstreamStatus() {
		byName[st.Name] = st
		names = append(names, st.Name)
	}
	if !slices.Equal(names, []string{"dead", "shared", "solo"}) {
		t.Fatalf("upstreams %v, want dead, shared and solo in order", names)
	}
	for _, tc := range []struct {
		name     string
		got      UpstreamStatus
		pools    []string
		healthy  bool
		breaker  BreakerState
		inflight int64
		requests uint64
	}{
		{"an upstream in two pools lists both and counts its request in flight", byName["shared"], []string{"a", "b"}, true, BreakerClosed, 1, 3},
		{"a drained upstream is not healthy and took no request", byName["solo"], []string{"b"}, false, BreakerClosed, 0, 0},
		{"a dead upstream's breaker is open", byName["dead"], []string{"c"}, true, BreakerOpen, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.got
			if !slices.Equal(g.Pools, tc.pools) || g.Healthy != tc.healthy || g.Breaker != tc.breaker ||
				g.InFlight != tc.inflight || g.Requests != tc.requests {
				t.Fatalf("got %+v", g)
			}
		})
	}
	if r := byName["dead"].BreakerReason; !strings.Contains(r, "consecutive failures") {
		t.Errorf("dead's breaker reason %q", r)
	}
	if byName["shared"].Latency <= 0 || byName["shared"].Address != shared.Address {
		t.Errorf("shared: latency %s, address %s", byName["shared"].Latency, byName["shared"].Address)
	}

	t.Run("in-flight requests reach zero when they finish, as a drain waits for", func(t *testing.T) {
		close(release)
		<-done
		waitFor(t, 5*time.Second, "shared to have no request in flight", func() bool {
			for _, st := range s.UpstreamStatus() {
				if st.Name == "shared" {
					return st.InFlight == 0
				}
			}
			return false
		})
	})
}
