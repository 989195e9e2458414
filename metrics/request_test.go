package metrics

import (
	"fmt"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func TestRequestsAreCountedByStatusClass(t *testing.T) {
	fams := mustScrape(t, mustPopulated(t).m)
	wantType(t, fams, "spooky_l7_requests_total", dto.MetricType_COUNTER)
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"200 and 204 count together as 2xx", l("service", "api", "route", "users", "pool", "pool-a", "upstream", "198.18.2.1:8080", "code", "2xx"), 2},
		{"a 503 counts as 5xx", l("service", "api", "route", "users", "pool", "pool-a", "upstream", "198.18.2.1:8080", "code", "5xx"), 1},
		{"a request no route matched has empty route, pool and upstream", l("service", "api", "route", "", "pool", "", "upstream", "", "code", "4xx"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustValue(t, fams, "spooky_l7_requests_total", tt.labels); got != tt.want {
				t.Errorf("spooky_l7_requests_total%v = %v, want %v", tt.labels, got, tt.want)
			}
		})
	}
}

func TestRequestDurationsFillTheHistogramOfTheirPool(t *testing.T) {
	fams := mustScrape(t, mustPopulated(t).m)
	h := mustHistogram(t, fams, "spooky_l7_request_duration_seconds", l("service", "api", "pool", "pool-a"))
	if h.GetSampleCount() != 3 {
		t.Errorf("count = %d, want 3", h.GetSampleCount())
	}
	if want := 0.003 + 0.040 + 2; h.GetSampleSum() < want-1e-9 || h.GetSampleSum() > want+1e-9 {
		t.Errorf("sum = %v, want %v", h.GetSampleSum(), want)
	}
	cumulative := map[float64]uint64{0.0025: 0, 0.005: 1, 0.05: 2, 1: 2, 2.5: 3, 30: 3}
	for _, b := range h.GetBucket() {
		if want, ok := cumulative[b.GetUpperBound()]; ok && b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	noRoute := mustHistogram(t, fams, "spooky_l7_request_duration_seconds", l("service", "api", "pool", ""))
	if noRoute.GetSampleCount() != 1 {
		t.Errorf("requests with no pool: count = %d, want 1", noRoute.GetSampleCount())
	}
}

func TestStatusClass(t *testing.T) {
	tests := []struct {
		status int
		want   string
	}{
		{100, "1xx"}, {200, "2xx"}, {299, "2xx"}, {301, "3xx"}, {404, "4xx"}, {499, "4xx"},
		{502, "5xx"}, {599, "5xx"}, {0, "other"}, {99, "other"}, {600, "other"}, {-1, "other"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("status %d is %s", tt.status, tt.want), func(t *testing.T) {
			if got := statusClasses[statusClass(tt.status)]; got != tt.want {
				t.Errorf("statusClass(%d) = %s, want %s", tt.status, got, tt.want)
			}
		})
	}
}

func TestOpenConnectionsFollowOpensAndCloses(t *testing.T) {
	fams := mustScrape(t, mustPopulated(t).m)
	wantType(t, fams, "spooky_l7_open_connections", dto.MetricType_GAUGE)
	if got := mustValue(t, fams, "spooky_l7_open_connections", l("service", "api", "proto", "quic")); got != 1 {
		t.Errorf("quic connections = %v, want 2 opened - 1 closed", got)
	}
	if got := mustValue(t, fams, "spooky_l7_open_connections", l("service", "api", "proto", "tcp")); got != 1 {
		t.Errorf("tcp connections = %v, want 1", got)
	}
}

func TestBreakerStateIsOneHot(t *testing.T) {
	tests := []struct {
		name  string
		calls []string // states set in order
		want  string   // the one state at 1
	}{
		{"a new breaker is closed", []string{"closed"}, "closed"},
		{"an opened breaker is open", []string{"closed", "open"}, "open"},
		{"half-open as l7 spells it is half_open", []string{"open", "half-open"}, "half_open"},
		{"half_open is taken as is", []string{"open", "half_open"}, "half_open"},
		{"an unknown state leaves the last one", []string{"open", "ajar"}, "open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{})
			for _, s := range tt.calls {
				m.SetBreakerState("198.18.2.1:8080", s)
			}
			fams := mustScrape(t, m)
			for _, s := range breakerStates {
				want := 0.0
				if s == tt.want {
					want = 1
				}
				if got := mustValue(t, fams, "spooky_l7_upstream_breaker_state", l("upstream", "198.18.2.1:8080", "state", s)); got != want {
					t.Errorf("state %s = %v, want %v", s, got, want)
				}
			}
		})
	}
	t.Run("a forgotten upstream has no series", func(t *testing.T) {
		m := New(Options{})
		m.SetBreakerState("198.18.2.1:8080", "open")
		m.ForgetBreaker("198.18.2.1:8080")
		if f, ok := mustScrape(t, m)["spooky_l7_upstream_breaker_state"]; ok {
			t.Errorf("breaker series left: %v", seriesOf(f))
		}
	})
}

func TestObserveRequestIsSafeForConcurrentUse(t *testing.T) {
	m := New(Options{})
	const goroutines, each = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				// Half the goroutines share label sets, half make new ones,
				// so reads race with copy-on-write inserts.
				m.ObserveRequest("api", "r", "p", fmt.Sprintf("u%d", (g%2)*i%50), 200, time.Millisecond)
			}
		})
	}
	wg.Wait()
	var total float64
	for _, mt := range mustScrape(t, m)["spooky_l7_requests_total"].GetMetric() {
		total += mt.GetCounter().GetValue()
	}
	if total != goroutines*each {
		t.Errorf("counted %v requests, want %d", total, goroutines*each)
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	m := New(Options{})
	b.ReportAllocs()
	for b.Loop() {
		m.ObserveRequest("api", "users", "pool-a", "198.18.2.1:8080", 200, 3*time.Millisecond)
	}
}

func BenchmarkObserveRequestParallel(b *testing.B) {
	m := New(Options{})
	upstreams := []string{"198.18.2.1:8080", "198.18.2.2:8080", "198.18.2.3:8080", "198.18.2.4:8080"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.ObserveRequest("api", "users", "pool-a", upstreams[i%len(upstreams)], 200+i%2*300, 3*time.Millisecond)
			i++
		}
	})
}

func BenchmarkConnOpenedClosed(b *testing.B) {
	m := New(Options{})
	b.ReportAllocs()
	for b.Loop() {
		m.ConnOpened("api", ProtoQUIC)
		m.ConnClosed("api", ProtoQUIC)
	}
}
