package config

import (
	"strings"
	"testing"
)

func TestSlowPathSettingsAreChecked(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"slow_path: {cid_cache_size: 10}\n", "cid_cache_size: 10 is out of range"},
		{"slow_path: {rate: 0}\n", "rate: must be positive"},
		{"slow_path: {burst: 4096}\n", "burst: 4096 is more than the AF_XDP RX ring holds"},
	} {
		_, err := Parse([]byte(minimalL4+tc.yaml), "test.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one containing %q", tc.yaml, err, tc.want)
		}
	}
	c := mustParse(t, minimalL4+"slow_path: {cid_cache_size: 4096, rate: 1000, burst: 10}\n")
	if c.SlowPath != (SlowPathConfig{CIDCacheSize: 4096, Rate: 1000, Burst: 10}) {
		t.Errorf("slow_path parsed as %+v", c.SlowPath)
	}
}
