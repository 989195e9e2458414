package metrics

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/spooky-lb/spooky/health"
)

func TestTargetHealthIsOneHotFromTheRegistry(t *testing.T) {
	f := mustPopulated(t)
	fams := mustScrape(t, f.m)
	wantType(t, fams, "spooky_target_health", dto.MetricType_GAUGE)
	tests := []struct {
		name               string
		kind, group, name_ string
		want               string
	}{
		{"an actively checked backend that passes is healthy", "backend", "web", "b1", "healthy"},
		{"a drained backend is draining", "backend", "web", "b2", "draining"},
		{"an upstream whose check fails is unhealthy, with no group", "upstream", "", "198.18.2.1:8080", "unhealthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range healthStates {
				want := 0.0
				if s.String() == tt.want {
					want = 1
				}
				labels := l("kind", tt.kind, "group", tt.group, "target", tt.name_, "state", s.String())
				if got := mustValue(t, fams, "spooky_target_health", labels); got != want {
					t.Errorf("spooky_target_health%v = %v, want %v", labels, got, want)
				}
			}
		})
	}
	t.Run("a changed state says since when", func(t *testing.T) {
		got := mustValue(t, fams, "spooky_target_health_since_timestamp_seconds", l("kind", "backend", "group", "web", "target", "b2"))
		if got < unixSeconds(f.before)-1e-3 || got > unixSeconds(f.after)+1e-3 {
			t.Errorf("since = %v, want between %v and %v", got, unixSeconds(f.before), unixSeconds(f.after))
		}
	})
	t.Run("a target healthy from the start has no since", func(t *testing.T) {
		if _, ok := find(fams, "spooky_target_health_since_timestamp_seconds", l("kind", "backend", "group", "web", "target", "b1")); ok {
			t.Error("b1 never changed state but has a since timestamp")
		}
	})
}

func TestTargetHealthFollowsTheRegistryAtEachScrape(t *testing.T) {
	reg := health.NewRegistry(nil)
	m := New(Options{Health: reg})
	b1 := health.Backend("web", "b1")
	healthy := l("kind", "backend", "group", "web", "target", "b1", "state", "healthy")
	reg.Report(b1, health.Active, health.Unhealthy, "timeout")
	if got := mustValue(t, mustScrape(t, m), "spooky_target_health", healthy); got != 0 {
		t.Fatalf("healthy = %v while the checker fails, want 0", got)
	}
	reg.Report(b1, health.Active, health.Healthy, "200 OK")
	if got := mustValue(t, mustScrape(t, m), "spooky_target_health", healthy); got != 1 {
		t.Errorf("healthy = %v after the checker passed, want 1", got)
	}
	reg.Forget(func(health.Target) bool { return false })
	if f, ok := mustScrape(t, m)["spooky_target_health"]; ok {
		t.Errorf("forgotten targets still exported: %v", seriesOf(f))
	}
}

func TestHealthChecksAreCountedByResult(t *testing.T) {
	fams := mustScrape(t, mustPopulated(t).m)
	wantType(t, fams, "spooky_health_checks_total", dto.MetricType_COUNTER)
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"passing checks of a backend", l("kind", "backend", "group", "web", "target", "b1", "type", "http3", "result", "pass"), 2},
		{"a failing check of an upstream", l("kind", "upstream", "group", "", "target", "198.18.2.1:8080", "type", "tcp", "result", "fail"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustValue(t, fams, "spooky_health_checks_total", tt.labels); got != tt.want {
				t.Errorf("spooky_health_checks_total%v = %v, want %v", tt.labels, got, tt.want)
			}
		})
	}
	t.Run("durations fill the histogram of their kind and type", func(t *testing.T) {
		h := mustHistogram(t, fams, "spooky_health_check_duration_seconds", l("kind", "backend", "type", "http3"))
		if h.GetSampleCount() != 2 || h.GetSampleSum() < 0.005-1e-9 || h.GetSampleSum() > 0.005+1e-9 {
			t.Errorf("count, sum = %d, %v; want 2, 0.005", h.GetSampleCount(), h.GetSampleSum())
		}
	})
}

// checkObserver is the shape of the active checker's observer in package
// health; Metrics must satisfy it.
type checkObserver interface {
	ObserveCheck(t health.Target, checkType string, ok bool, took time.Duration)
}

var _ checkObserver = (*Metrics)(nil)
