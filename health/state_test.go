package health

import "testing"

func TestStateNames(t *testing.T) {
	for s, want := range map[State]string{Healthy: "healthy", Unhealthy: "unhealthy", Draining: "draining", 9: "state(9)"} {
		if s.String() != want {
			t.Errorf("State(%d).String() = %q, want %q", s, s.String(), want)
		}
	}
	for s, want := range map[Source]string{Operator: "operator", Active: "active", Passive: "passive", 9: "source(9)"} {
		if s.String() != want {
			t.Errorf("Source(%d).String() = %q, want %q", s, s.String(), want)
		}
	}
}

func TestTargets(t *testing.T) {
	t.Run("a backend and an upstream of the same name are different targets", func(t *testing.T) {
		if Backend("web", "b1") == Upstream("web/b1") {
			t.Fatal("backend web/b1 equals upstream web/b1")
		}
		if got := Backend("web", "b1").String(); got != "web/b1" {
			t.Fatalf("String = %q", got)
		}
	})
	t.Run("ParseBackend takes service/backend and nothing else", func(t *testing.T) {
		for in, ok := range map[string]bool{"web/b1": true, "web": false, "/b1": false, "web/": false, "a/b/c": false, "": false} {
			got, gotOK := ParseBackend(in)
			if gotOK != ok {
				t.Errorf("ParseBackend(%q) ok = %v, want %v", in, gotOK, ok)
			}
			if ok && got.String() != in {
				t.Errorf("ParseBackend(%q) = %v", in, got)
			}
		}
	})
}
