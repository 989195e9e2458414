package main

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/admin/admintest"
	"github.com/spooky-lb/spooky/config"
)

func TestReloadPrintsEveryProblemOfARejectedFile(t *testing.T) {
	path := mustWriteFile(t, "spooky.yaml", `services:
  - name: web
    address: 198.18.0.300
    port: 70000
    backends:
      - {name: b1, address: 198.18.1.1, weight: 0}
`)
	_, problems := config.Load(path)
	d := admintest.New()
	d.ReloadErr = fmt.Errorf("reload %s: %w", path, problems)
	sock := mustServeAdmin(t, d)

	out, errOut, code := runCLI(t, "reload", "--admin", sock)
	want := path + `:3:14: address: "198.18.0.300" is not an IP address
` + path + `:4:11: port: 70000 is out of range 1..65535
` + path + `:6:49: weight: must be positive, got 0
spooky: reload: configuration rejected, 3 problems; the running configuration stays
`
	if code != 1 || out != "" || errOut != want {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, stderr:\n%s", code, out, errOut, want)
	}
}

func TestReloadSaysWhatChanged(t *testing.T) {
	res := admin.ReloadResult{
		Config:  admin.ConfigInfo{Path: "/etc/spooky/spooky.yaml", SHA256: "ab12", LoadedAt: admintest.Loaded},
		Changes: "service web: backends added b3",
	}
	tests := []struct {
		name    string
		changes string
		want    string
	}{
		{"a reload that changed something", res.Changes, "reloaded /etc/spooky/spooky.yaml (sha256 ab12): service web: backends added b3\n"},
		{"a reload of the same file", "", "reloaded /etc/spooky/spooky.yaml (sha256 ab12): no changes\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := admintest.New()
			d.ReloadResult = res
			d.ReloadResult.Changes = tt.changes
			out, errOut, code := runCLI(t, "reload", "--admin", mustServeAdmin(t, d))
			if code != 0 || out != tt.want || errOut != "" || d.Reloads() != 1 {
				t.Errorf("exit %d, stdout %q, stderr %q, %d reloads; want 0, %q, nothing, 1", code, out, errOut, d.Reloads(), tt.want)
			}
		})
	}
	t.Run("--json", func(t *testing.T) {
		d := admintest.New()
		d.ReloadResult = res
		out, _, code := runCLI(t, "reload", "--json", "--admin", mustServeAdmin(t, d))
		var got admin.ReloadResult
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.Changes != res.Changes || !got.Config.LoadedAt.Equal(res.Config.LoadedAt) {
			t.Errorf("exit %d, %v, got %+v", code, err, got)
		}
	})
}
