package forwarder

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/spooky-lb/spooky/bpf"
)

// TestPlanTakesEveryConfigValidationAcceptsAtTheLimits checks that config's
// limits are the planner's: a configuration with as many services and
// backends as the maps hold, which validation accepts, also plans, with
// every Maglev table within the size the maps hold.
func TestPlanTakesEveryConfigValidationAcceptsAtTheLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("services:\n")
	n := 0
	for i := range bpf.MaxVIPs {
		backends := 1
		if i == 0 {
			backends = bpf.MaxBackends - (bpf.MaxVIPs - 1) // the rest in one service
		}
		fmt.Fprintf(&b, "  - name: s%d\n    address: 198.18.%d.%d\n    port: 443\n    backends:\n", i, i/256, i%256)
		for j := range backends {
			n++
			fmt.Fprintf(&b, "      - {name: b%d, address: 10.%d.%d.%d}\n", j, n>>16&255, n>>8&255, n&255)
		}
	}
	cfg := mustParse(t, b.String())
	d, err := NewPlanner(fixedHops{}, nil).Plan(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Plan of a config at the limits: %v", err)
	}
	if len(d.VIPs) != bpf.MaxVIPs || len(d.Backends) != bpf.MaxBackends {
		t.Errorf("planned %d VIPs and %d backends, want %d and %d", len(d.VIPs), len(d.Backends), bpf.MaxVIPs, bpf.MaxBackends)
	}
	for _, v := range d.VIPs {
		if len(v.Table) == 0 || len(v.Table) > bpf.MaglevMaxSize {
			t.Errorf("service %s: maglev table of %d entries, want 1..%d", v.Service, len(v.Table), bpf.MaglevMaxSize)
		}
	}
}
