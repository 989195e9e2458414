package metrics

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func TestReloadsAreCountedAndTheRunningConfigNamed(t *testing.T) {
	tests := []struct {
		name       string
		reloads    []bool // results in order; the file of the i-th is hash i
		ok, failed float64
		info       string // running config's hash; "" for none
		successful float64
	}{
		{"before any load both results are zero", nil, 0, 0, "", -1},
		{"a first load names the config", []bool{true}, 1, 0, "h0", 1},
		{"a rejected reload keeps the running config", []bool{true, false}, 1, 1, "h0", 0},
		{"a later good reload replaces it", []bool{true, false, true}, 2, 1, "h2", 1},
		{"a rejected first load names no config", []bool{false}, 0, 1, "", 0},
	}
	hashes := []string{"h0", "h1", "h2"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{})
			clock := time.Unix(1_700_000_000, 500_000_000)
			m.reload.now = func() time.Time { return clock }
			for i, ok := range tt.reloads {
				m.ObserveReload(ok, hashes[i])
			}
			fams := mustScrape(t, m)
			wantType(t, fams, "spooky_config_reloads_total", dto.MetricType_COUNTER)
			if got := mustValue(t, fams, "spooky_config_reloads_total", l("result", "ok")); got != tt.ok {
				t.Errorf("ok reloads = %v, want %v", got, tt.ok)
			}
			if got := mustValue(t, fams, "spooky_config_reloads_total", l("result", "failed")); got != tt.failed {
				t.Errorf("failed reloads = %v, want %v", got, tt.failed)
			}
			if tt.info == "" {
				if f, ok := fams["spooky_config_info"]; ok {
					t.Errorf("spooky_config_info = %v, want none", seriesOf(f))
				}
				if _, ok := fams["spooky_config_last_reload_success_timestamp_seconds"]; ok {
					t.Error("a success timestamp with no success")
				}
			} else {
				if n := len(fams["spooky_config_info"].GetMetric()); n != 1 {
					t.Errorf("%d spooky_config_info series, want 1", n)
				}
				if got := mustValue(t, fams, "spooky_config_info", l("sha256", tt.info)); got != 1 {
					t.Errorf("spooky_config_info{sha256=%q} = %v, want 1", tt.info, got)
				}
				if got := mustValue(t, fams, "spooky_config_last_reload_success_timestamp_seconds", nil); got != 1_700_000_000.5 {
					t.Errorf("success timestamp = %v, want 1700000000.5", got)
				}
			}
			if tt.successful < 0 {
				if _, ok := fams["spooky_config_last_reload_successful"]; ok {
					t.Error("spooky_config_last_reload_successful before any load")
				}
			} else if got := mustValue(t, fams, "spooky_config_last_reload_successful", nil); got != tt.successful {
				t.Errorf("last reload successful = %v, want %v", got, tt.successful)
			}
		})
	}
}

func TestBuildInfoNamesTheVersion(t *testing.T) {
	tests := []struct {
		name, version, want string
	}{
		{"a given version is used", "v1.2.3", "v1.2.3"},
		{"no version falls back to the build information", "", "(devel)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fams := mustScrape(t, New(Options{Version: tt.version}))
			wantType(t, fams, "spooky_build_info", dto.MetricType_GAUGE)
			ms := fams["spooky_build_info"].GetMetric()
			if len(ms) != 1 {
				t.Fatalf("%d build_info series, want 1", len(ms))
			}
			got := labelsOf(ms[0])
			if got["version"] != tt.want || got["goversion"] == "" || got["revision"] == "" || ms[0].GetGauge().GetValue() != 1 {
				t.Errorf("spooky_build_info%v = %v, want version %q, goversion and revision set, value 1",
					got, ms[0].GetGauge().GetValue(), tt.want)
			}
		})
	}
}
