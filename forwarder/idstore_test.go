package forwarder

import (
	"os"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mustBPFFSDir returns a fresh directory on the bpf filesystem.
func mustBPFFSDir(tb testing.TB) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("pinning maps needs root; run the tests as root")
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		tb.Skip("no bpffs at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)")
	}
	dir, err := os.MkdirTemp("/sys/fs/bpf", "spooky-test-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func backendsYAML(names ...string) string {
	var b strings.Builder
	b.WriteString("services:\n  - name: web\n    address: 198.18.0.10\n    port: 443\n    backends:\n")
	for i, n := range names {
		b.WriteString("      - {name: " + n + ", address: 198.18.0." + string(rune('1'+i)) + "1}\n")
	}
	return b.String()
}

func backendIndexes(p *Planner) map[string]uint32 {
	out := map[string]uint32{}
	for k, v := range p.backends.byKey {
		out[k] = v
	}
	return out
}

func TestStoredIDsSurviveARestartAfterReloads(t *testing.T) {
	dir := mustBPFFSDir(t)
	store, err := openIDStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	first := NewPlanner(fixedHops{}, nil)
	mustPlan(t, first, backendsYAML("b1", "b2", "b3"))
	mustPlan(t, first, backendsYAML("b2", "b3"))
	mustPlan(t, first, backendsYAML("b2", "b3", "b4"))
	if err := store.save(first.vips, first.backends); err != nil {
		t.Fatal(err)
	}
	want := backendIndexes(first)
	if want["web/b4"] != 0 {
		t.Fatalf("after the reloads b4 has index %d; the test needs ids away from config order", want["web/b4"])
	}
	store.close()

	t.Run("a restarted planner seeded from the store keeps every index", func(t *testing.T) {
		store, err := openIDStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer store.close()
		vips, backends, err := store.load()
		if err != nil {
			t.Fatal(err)
		}
		again := NewPlanner(fixedHops{}, nil)
		cfg := mustParse(t, backendsYAML("b2", "b3", "b4"))
		if err := again.seed(cfg, vips, backends); err != nil {
			t.Fatal(err)
		}
		d := mustPlan(t, again, backendsYAML("b2", "b3", "b4"))
		if got := backendIndexes(again); len(got) != len(want) || got["web/b2"] != want["web/b2"] || got["web/b3"] != want["web/b3"] || got["web/b4"] != want["web/b4"] {
			t.Fatalf("indexes after restart = %v, want %v", got, want)
		}
		if len(d.Freed) != 0 {
			t.Fatalf("freed %v after a restart with the same config", d.Freed)
		}
	})

	t.Run("stored ids the new config no longer names are freed, not reused", func(t *testing.T) {
		store, err := openIDStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer store.close()
		vips, backends, _ := store.load()
		again := NewPlanner(fixedHops{}, nil)
		cfg := mustParse(t, backendsYAML("b2", "b5"))
		if err := again.seed(cfg, vips, backends); err != nil {
			t.Fatal(err)
		}
		d := mustPlan(t, again, backendsYAML("b2", "b5"))
		freed := slices.Sorted(slices.Values(d.Freed))
		wantFreed := slices.Sorted(slices.Values([]uint32{want["web/b3"], want["web/b4"]}))
		if !slices.Equal(freed, wantFreed) {
			t.Fatalf("freed %v, want b3's and b4's indexes %v", freed, wantFreed)
		}
		if got := backendIndexes(again); got["web/b2"] != want["web/b2"] || slices.Contains(wantFreed, got["web/b5"]) {
			t.Fatalf("indexes = %v: b2 must keep %d and b5 must not take a freed index", got, want["web/b2"])
		}
	})

	t.Run("long names are stored as digests and still match", func(t *testing.T) {
		a, b := storedName(strings.Repeat("x", 200)), storedName(strings.Repeat("x", 200))
		if a != b || !strings.HasPrefix(string(a[:]), "sha256:") || a == storedName(strings.Repeat("x", 201)) {
			t.Fatalf("a 200-octet name is stored as %q: want the same digest each time, and another for another name", a)
		}
	})
}
