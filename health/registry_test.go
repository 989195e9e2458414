package health

import (
	"testing"
	"time"
)

func TestRegistry(t *testing.T) {
	b1 := Backend("web", "b1")

	t.Run("a target never reported is healthy", func(t *testing.T) {
		r := NewRegistry(nil)
		if got := r.Get(b1); got.State != Healthy || !got.Since.IsZero() {
			t.Fatalf("Get = %+v, want healthy with zero Since", got)
		}
		if !r.Upstreams().Healthy("http://198.18.0.1") {
			t.Fatal("an upstream never reported is not healthy")
		}
	})

	t.Run("a change is recorded with its reason, source and time and told to subscribers", func(t *testing.T) {
		r := NewRegistry(nil)
		at := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
		r.now = func() time.Time { return at }
		var got []Change
		cancel := r.Subscribe(func(c Change) { got = append(got, c) })
		if !r.Report(b1, Active, Unhealthy, "3 probes failed") {
			t.Fatal("Report of unhealthy reported no change")
		}
		st := r.Get(b1)
		if st.State != Unhealthy || st.Reason != "3 probes failed" || st.Source != Active || !st.Since.Equal(at) {
			t.Fatalf("Get = %+v", st)
		}
		if len(got) != 1 || got[0].Target != b1 || got[0].From.State != Healthy || got[0].To.State != Unhealthy {
			t.Fatalf("subscriber saw %+v", got)
		}
		cancel()
		r.Report(b1, Operator, Draining, "operator")
		if len(got) != 1 {
			t.Fatalf("an unsubscribed func saw %d changes, want 1", len(got))
		}
	})

	t.Run("the same verdict again updates the reason but tells nobody", func(t *testing.T) {
		r := NewRegistry(nil)
		n := 0
		r.Subscribe(func(Change) { n++ })
		r.Report(b1, Active, Unhealthy, "first")
		if r.Report(b1, Active, Unhealthy, "second") {
			t.Fatal("a repeated verdict reported a change")
		}
		if n != 1 || r.Get(b1).Reason != "second" {
			t.Fatalf("notifications = %d, reason = %q; want 1, second", n, r.Get(b1).Reason)
		}
		if r.Report(Backend("web", "b2"), Active, Healthy, "200 OK") {
			t.Fatal("a healthy verdict on a new target reported a change")
		}
	})

	t.Run("a passing probe never undoes a drain", func(t *testing.T) {
		r := NewRegistry(nil)
		r.Report(b1, Operator, Draining, "spooky drain")
		r.Report(b1, Active, Unhealthy, "connection refused")
		r.Report(b1, Active, Healthy, "handshake ok")
		if st := r.Get(b1); st.State != Draining || st.Source != Operator {
			t.Fatalf("after a passing probe, Get = %+v, want draining by the operator", st)
		}
		if !r.Clear(b1, Operator) {
			t.Fatal("undrain reported no change")
		}
		if st := r.Get(b1); st.State != Healthy || st.Reason != "handshake ok" {
			t.Fatalf("after undrain, Get = %+v, want healthy with the probe's reason", st)
		}
	})

	t.Run("an undrain of a target its checker has failed leaves it unhealthy", func(t *testing.T) {
		r := NewRegistry(nil)
		r.Report(b1, Operator, Draining, "spooky drain")
		r.Report(b1, Active, Unhealthy, "timeout")
		r.Clear(b1, Operator)
		if st := r.Get(b1); st.State != Unhealthy || st.Source != Active {
			t.Fatalf("Get = %+v, want unhealthy by the active checker", st)
		}
	})

	t.Run("a passing probe does not close an open breaker early, nor the reverse", func(t *testing.T) {
		r := NewRegistry(nil)
		u := Upstream("h3://198.18.0.10:443")
		r.Report(u, Passive, Unhealthy, "circuit breaker open")
		r.Report(u, Active, Healthy, "200 OK")
		if r.Upstreams().Healthy(u.Name) {
			t.Fatal("an upstream whose breaker is open is healthy after a passing probe")
		}
		r.Report(u, Active, Unhealthy, "503")
		r.Clear(u, Passive)
		if st := r.Get(u); st.State != Unhealthy || st.Source != Active {
			t.Fatalf("after the breaker closed, Get = %+v, want unhealthy by the active checker", st)
		}
		r.Report(u, Active, Healthy, "200 OK")
		if !r.Upstreams().Healthy(u.Name) {
			t.Fatal("an upstream is not healthy with every source clear")
		}
	})

	t.Run("a state kept across sources keeps its Since", func(t *testing.T) {
		r := NewRegistry(nil)
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		r.now = func() time.Time { return t0 }
		r.Report(b1, Active, Unhealthy, "refused")
		r.now = func() time.Time { return t0.Add(time.Minute) }
		if r.Report(b1, Passive, Unhealthy, "breaker") {
			t.Fatal("a second unhealthy source reported a change")
		}
		if st := r.Get(b1); !st.Since.Equal(t0) || st.Source != Active {
			t.Fatalf("Get = %+v, want Since %v from the active checker", st, t0)
		}
	})

	t.Run("forgotten targets start healthy and leave the snapshot", func(t *testing.T) {
		r := NewRegistry(nil)
		b2 := Backend("web", "b2")
		r.Report(b1, Active, Unhealthy, "refused")
		r.Report(b2, Operator, Draining, "drain")
		r.Forget(func(t Target) bool { return t == b2 })
		if r.Get(b1).State != Healthy {
			t.Fatal("a forgotten target kept its state")
		}
		snap := r.Snapshot()
		if len(snap) != 1 || snap[0].Target != b2 || snap[0].Sources[Operator].State != Draining {
			t.Fatalf("Snapshot = %+v", snap)
		}
	})

	t.Run("a subscriber may read the registry", func(t *testing.T) {
		r := NewRegistry(nil)
		var seen State
		r.Subscribe(func(c Change) { seen = r.Get(c.Target).State })
		r.Report(b1, Operator, Draining, "drain")
		if seen != Draining {
			t.Fatalf("subscriber read %v", seen)
		}
	})
}

func BenchmarkUpstreamHealthy(b *testing.B) {
	r := NewRegistry(nil)
	for i := range 100 {
		r.Report(Upstream(string(rune('a'+i%26))+"x"), Active, Healthy, "ok")
	}
	h := r.Upstreams()
	b.ReportAllocs()
	for b.Loop() {
		h.Healthy("ax")
	}
}

func TestRegistryNamesTheSourceOfARecovery(t *testing.T) {
	r := NewRegistry(nil)
	b := Backend("web", "b1")
	var got []Change
	r.Subscribe(func(c Change) { got = append(got, c) })
	r.Report(b, Active, Unhealthy, "refused")
	r.Report(b, Active, Healthy, "200 in 2ms")
	r.Report(b, Operator, Draining, "drain")
	r.Clear(b, Operator)
	want := []Source{Active, Active, Operator, Operator}
	if len(got) != len(want) {
		t.Fatalf("%d changes, want %d", len(got), len(want))
	}
	for i, c := range got {
		if c.To.Source != want[i] {
			t.Errorf("change %d to %s names source %s, want %s", i, c.To.State, c.To.Source, want[i])
		}
	}
}
