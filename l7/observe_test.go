package l7

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingObserver keeps every observation.
type recordingObserver struct {
	mu       sync.Mutex
	requests []string       // "service route pool upstream status"
	open     map[string]int // "service/proto" → open now
	opened   map[string]int // "service/proto" → ever opened
	took     []time.Duration
}

func newRecordingObserver() *recordingObserver {
	return &recordingObserver{open: map[string]int{}, opened: map[string]int{}}
}

func (o *recordingObserver) ObserveRequest(service, route, pool, upstream string, status int, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests = append(o.requests, fmt.Sprintf("%s %q %q %q %d", service, route, pool, upstream, status))
	o.took = append(o.took, took)
}

func (o *recordingObserver) ConnOpened(service, proto string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.open[service+"/"+proto]++
	o.opened[service+"/"+proto]++
}

func (o *recordingObserver) ConnClosed(service, proto string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.open[service+"/"+proto]--
}

func (o *recordingObserver) snapshot() (requests []string, open, opened map[string]int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.requests), maps.Clone(o.open), maps.Clone(o.opened)
}

func TestObserverSeesEveryRequestAndConnection(t *testing.T) {
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "u", nil)
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}},
		Route{Name: "ok", Match: Match{PathPrefix: "/ok"}, Pool: "p"},
		Route{Name: "dead", Match: Match{PathPrefix: "/dead"}, Pool: "dead"},
	)
	cfg.Pools = append(cfg.Pools, PoolConfig{Name: "dead", Upstreams: []UpstreamConfig{{Name: "gone", Address: deadAddress(t)}}})
	cfg.Services[0].TCP = true
	obs := newRecordingObserver()
	cfg.Observer = obs
	s := mustServer(t, cfg)
	addr := mustAddr(t, s)

	h3c, h3tr := h3Client(t, cert, addr)
	h1c, h1tr := tcpClient(t, cert, addr, false)
	h2c, h2tr := tcpClient(t, cert, addr, true)
	var want []string
	for _, tc := range []struct {
		client   *http.Client
		path     string
		status   int
		labels   string // route pool upstream
		protocol string
	}{
		{h3c, "/ok", 200, `"ok" "p" "u"`, "HTTP/3"},
		{h3c, "/nowhere", 404, `"" "" ""`, "HTTP/3"},
		{h3c, "/dead", 502, `"dead" "dead" ""`, "HTTP/3"},
		{h1c, "/ok", 200, `"ok" "p" "u"`, "HTTP/1.1"},
		{h1c, "/nowhere", 404, `"" "" ""`, "HTTP/1.1"},
		{h2c, "/ok/x", 200, `"ok" "p" "u"`, "HTTP/2"},
		{h2c, "/dead", 502, `"dead" "dead" ""`, "HTTP/2"},
	} {
		res, _ := mustGet(t, tc.client, "https://app.example.com"+tc.path)
		if res.StatusCode != tc.status {
			t.Fatalf("%s %s: status %d, want %d", tc.protocol, tc.path, res.StatusCode, tc.status)
		}
		want = append(want, fmt.Sprintf("svc %s %d", tc.labels, tc.status))
	}
	// The observation follows the response, so it may land just after the
	// client has read it.
	waitFor(t, 5*time.Second, "every request to be observed", func() bool {
		reqs, _, _ := obs.snapshot()
		return len(reqs) >= len(want)
	})
	reqs, open, opened := obs.snapshot()
	slices.Sort(reqs)
	slices.Sort(want)
	if strings.Join(reqs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("observed\n%s\nwant\n%s", strings.Join(reqs, "\n"), strings.Join(want, "\n"))
	}
	obs.mu.Lock()
	for _, d := range obs.took {
		if d <= 0 {
			t.Errorf("a request took %s", d)
		}
	}
	obs.mu.Unlock()
	t.Run("each client holds one open connection", func(t *testing.T) {
		if open["svc/quic"] != 1 || open["svc/tcp"] != 2 || opened["svc/quic"] != 1 || opened["svc/tcp"] != 2 {
			t.Fatalf("open %v, ever opened %v; want 1 quic and 2 tcp", open, opened)
		}
	})
	t.Run("closed connections are counted down", func(t *testing.T) {
		h3tr.Close()
		h1tr.CloseIdleConnections()
		h2tr.CloseIdleConnections()
		waitFor(t, 10*time.Second, "every connection to be counted closed", func() bool {
			_, open, _ := obs.snapshot()
			return open["svc/quic"] == 0 && open["svc/tcp"] == 0
		})
		_, _, opened := obs.snapshot()
		if opened["svc/quic"] != 1 || opened["svc/tcp"] != 2 {
			t.Fatalf("ever opened %v, want 1 quic and 2 tcp", opened)
		}
	})
}

func TestObservingARequestAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops pooled objects at random, so allocations cannot be counted")
	}
	cert := mustCert(t, "app.example.com")
	up := mustUpstream(t, ProtoH1, "u", nil)
	cfg := oneService(t, cert, PoolConfig{Upstreams: []UpstreamConfig{up}}, Route{Match: Match{PathPrefix: "/ok"}, Pool: "p"})
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc := s.services["svc"]
	r := httptest.NewRequest("GET", "https://app.example.com/nowhere", nil)
	w := httptest.NewRecorder()
	serve := func() {
		w.Body.Reset()
		clear(w.Header())
		w.Code = 0
		svc.ServeHTTP(w, r)
	}
	without := testing.AllocsPerRun(200, serve)
	svc.obs = nopObserver{}
	with := testing.AllocsPerRun(200, serve)
	t.Logf("allocations per 404: %.1f without an observer, %.1f with one", without, with)
	if with > without {
		t.Fatalf("observing adds %.1f allocations per request", with-without)
	}
}

type nopObserver struct{}

func (nopObserver) ObserveRequest(string, string, string, string, int, time.Duration) {}
func (nopObserver) ConnOpened(string, string)                                         {}
func (nopObserver) ConnClosed(string, string)                                         {}

// BenchmarkProxyOverheadObserved is BenchmarkProxyOverhead with an
// Observer set: the difference is what observing costs per request.
func BenchmarkProxyOverheadObserved(b *testing.B) {
	cert := mustCert(b, "app.example.com")
	up := UpstreamConfig{Name: "canned", Address: "198.18.0.1:80"}
	cfg := oneService(b, cert, PoolConfig{Name: "p", Upstreams: []UpstreamConfig{up}}, Route{Pool: "p"})
	cfg.Observer = nopObserver{}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	s.Upstream("canned").transport = cannedTransport{}
	svc := s.services["svc"]
	req, err := http.NewRequest(http.MethodGet, "https://app.example.com/some/path?q=1", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/3.0", 3, 0
	req.RemoteAddr = "198.18.0.9:50000"
	req.RequestURI = "/some/path?q=1"
	req.Header.Set("User-Agent", "bench")
	req.Header.Set("Accept", "*/*")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		ctx, cancel := context.WithCancel(context.Background())
		svc.ServeHTTP(w, req.WithContext(ctx))
		cancel()
	}
}
