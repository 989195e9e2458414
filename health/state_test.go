package health

import (
	"testing"
	"time"
)

func TestRegistry(t *testing.T) {
	t.Run("a target never set is healthy", func(t *testing.T) {
		r := NewRegistry()
		if got := r.Get("web/b1"); got.State != Healthy || !got.Since.IsZero() {
			t.Fatalf("Get = %+v, want healthy with zero Since", got)
		}
		if !r.Healthy("web/b1") {
			t.Fatal("Healthy = false for a target never set")
		}
	})

	t.Run("a change is recorded with its reason and time and told to subscribers", func(t *testing.T) {
		r := NewRegistry()
		at := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
		r.now = func() time.Time { return at }
		var got []Change
		cancel := r.Subscribe(func(c Change) { got = append(got, c) })
		if !r.Set("web/b1", Unhealthy, "3 probes failed") {
			t.Fatal("Set to unhealthy reported no change")
		}
		st := r.Get("web/b1")
		if st.State != Unhealthy || st.Reason != "3 probes failed" || !st.Since.Equal(at) {
			t.Fatalf("Get = %+v", st)
		}
		if len(got) != 1 || got[0].Target != "web/b1" || got[0].From.State != Healthy || got[0].To.State != Unhealthy {
			t.Fatalf("subscriber saw %+v", got)
		}
		if r.Healthy("web/b1") {
			t.Fatal("Healthy = true for an unhealthy target")
		}
		cancel()
		r.Set("web/b1", Draining, "operator")
		if len(got) != 1 {
			t.Fatalf("an unsubscribed func saw %d changes, want 1", len(got))
		}
	})

	t.Run("setting the same state again updates the reason but tells nobody", func(t *testing.T) {
		r := NewRegistry()
		n := 0
		r.Subscribe(func(Change) { n++ })
		r.Set("u", Draining, "first")
		if r.Set("u", Draining, "second") {
			t.Fatal("Set of the same state reported a change")
		}
		if n != 1 || r.Get("u").Reason != "second" {
			t.Fatalf("notifications = %d, reason = %q; want 1, second", n, r.Get("u").Reason)
		}
		if r.Set("v", Healthy, "checked") {
			t.Fatal("setting a never-set target healthy reported a change")
		}
	})

	t.Run("states have operator names", func(t *testing.T) {
		for s, want := range map[State]string{Healthy: "healthy", Unhealthy: "unhealthy", Draining: "draining", 9: "state(9)"} {
			if s.String() != want {
				t.Errorf("State(%d).String() = %q, want %q", s, s.String(), want)
			}
		}
	})
}
