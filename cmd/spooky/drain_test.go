package main

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/admin/admintest"
)

// remaining returns a Remaining func that answers counts[n-1] on the n-th
// progress call, and the last count ever after.
func remaining(counts ...int64) func(string, int) int64 {
	return func(_ string, n int) int64 { return counts[min(n, len(counts))-1] }
}

func TestDrainAndUndrainPrintTheTargetsState(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		remaining []int64
		want      string
	}{
		{"a drain without --wait says what remains", []string{"drain", "web/b1"}, []int64{12},
			"web/b1: draining, 12 flows remaining\n"},
		{"a drain of an idle backend is done at once", []string{"drain", "web/b1"}, nil,
			"web/b1: drained, nothing remaining\n"},
		{"an upstream is drained by its URL", []string{"drain", "h3://198.18.2.2:8443"}, []int64{1},
			"h3://198.18.2.2:8443: draining, 1 request remaining\n"},
		{"--wait prints each change until nothing remains", []string{"drain", "web/b1", "--wait", "--interval", "1ms"}, []int64{5, 5, 2, 0},
			"web/b1: draining, 5 flows remaining\nweb/b1: draining, 2 flows remaining\nweb/b1: drained, nothing remaining\n"},
		{"undrain", []string{"undrain", "web/b1"}, nil, "web/b1: undrained, now healthy\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := admintest.New()
			if tt.remaining != nil {
				d.Remaining = remaining(tt.remaining...)
			}
			sock := mustServeAdmin(t, d)
			out, errOut, code := runCLI(t, append(tt.args, "--admin", sock)...)
			if code != 0 || out != tt.want || errOut != "" {
				t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, tt.want)
			}
		})
	}
}

func TestDrainWaitGivesUpAfterTheTimeoutSayingWhatRemains(t *testing.T) {
	d := admintest.New()
	d.Remaining = remaining(3)
	sock := mustServeAdmin(t, d)
	out, errOut, code := runCLI(t, "drain", "web/b1", "--wait", "--timeout", "20ms", "--interval", "1ms", "--admin", sock)
	wantErr := "spooky: drain: web/b1: still draining after 20ms, 3 flows remaining; it stays drained (spooky undrain web/b1 takes it back)\n"
	if code != 1 || out != "web/b1: draining, 3 flows remaining\n" || errOut != wantErr {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, stderr:\n%s", code, out, errOut, wantErr)
	}
	// Giving up waiting does not undo the drain.
	p, _ := d.DrainProgress(context.Background(), "web/b1")
	if p.State != "draining" {
		t.Errorf("after the timeout web/b1 is %s", p.State)
	}
}

func TestDrainJSONIsTheLastProgress(t *testing.T) {
	d := admintest.New()
	d.Remaining = remaining(4, 0)
	sock := mustServeAdmin(t, d)
	out, errOut, code := runCLI(t, "drain", "web/b2", "--json", "--wait", "--interval", "1ms", "--admin", sock)
	var p admin.DrainProgress
	if err := json.Unmarshal([]byte(out), &p); code != 0 || err != nil {
		t.Fatalf("exit %d, %v, stdout %q, stderr %q", code, err, out, errOut)
	}
	want := admin.DrainProgress{Target: "web/b2", State: "draining", Unit: admin.UnitFlows, Done: true}
	if p != want {
		t.Errorf("got %+v, want %+v", p, want)
	}
}

func TestDrainOfAnUnknownTargetFails(t *testing.T) {
	sock := mustServeAdmin(t, admintest.New())
	for _, cmd := range []string{"drain", "undrain"} {
		t.Run(cmd, func(t *testing.T) {
			out, errOut, code := runCLI(t, cmd, "web/b9", "--admin", sock)
			if want := "spooky: " + cmd + ": unknown target \"web/b9\"\n"; code != 1 || out != "" || errOut != want {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, out, errOut, want)
			}
		})
	}
}

// withdrawnDaemon answers that the drain was withdrawn (by another
// operator) from the second progress call on.
type withdrawnDaemon struct {
	*admintest.Daemon
	calls atomic.Int32
}

func (d *withdrawnDaemon) DrainProgress(ctx context.Context, target string) (*admin.DrainProgress, error) {
	p, err := d.Daemon.DrainProgress(ctx, target)
	if err == nil && d.calls.Add(1) > 1 {
		p.State, p.Done = "healthy", false
	}
	return p, err
}

func TestDrainWaitStopsWhenTheDrainIsWithdrawn(t *testing.T) {
	d := &withdrawnDaemon{Daemon: admintest.New()}
	d.Remaining = remaining(5)
	sock := mustServeAdmin(t, d)
	out, errOut, code := runCLI(t, "drain", "web/b1", "--wait", "--interval", "1ms", "--admin", sock)
	wantErr := "spooky: drain: web/b1 is healthy: its drain was withdrawn while waiting\n"
	if code != 1 || out != "web/b1: draining, 5 flows remaining\n" || errOut != wantErr {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1, the first progress, %q", code, out, errOut, wantErr)
	}
}
