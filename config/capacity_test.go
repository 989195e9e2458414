package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spooky-lb/spooky/bpf"
)

// service is one generated l4 service: its forwarding and backend count.
type service struct {
	forwarding Forwarding
	backends   int
}

// l4Config writes a configuration of the given services, each on its own
// VIP, with distinct backend addresses.
func l4Config(services ...service) string {
	var b strings.Builder
	b.WriteString("services:\n")
	n := 0
	for i, s := range services {
		fmt.Fprintf(&b, "  - name: s%d\n    address: 198.18.%d.%d\n    port: 443\n    forwarding: %s\n    backends:\n", i, i/256, i%256, s.forwarding)
		for j := range s.backends {
			n++
			fmt.Fprintf(&b, "      - {name: b%d, address: 10.%d.%d.%d}\n", j, n>>16&255, n>>8&255, n&255)
		}
	}
	return b.String()
}

// repeat returns n copies of s.
func repeat(n int, s service) []service {
	out := make([]service, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func TestValidationHoldsTheConfigToWhatTheXDPMapsHold(t *testing.T) {
	one := service{ForwardingL2DSR, 1}
	proxy := service{ForwardingProxy, 1}
	for _, tc := range []struct {
		name string
		src  string
		msg  string // "" if the config is valid
		at   string
	}{
		{
			name: "as many services as VIP ids fit",
			src:  l4Config(repeat(bpf.MaxVIPs, one)...),
		},
		{
			name: "one service more than VIP ids is refused at that service",
			src:  l4Config(repeat(bpf.MaxVIPs+1, one)...),
			msg:  "services: the XDP maps hold 256 services (l4 with forwarding proxy not counted) and this is one more",
			at:   fmt.Sprintf("name: s%d\n", bpf.MaxVIPs),
		},
		{
			name: "services with forwarding proxy do not take VIP ids",
			src:  l4Config(append(repeat(bpf.MaxVIPs, one), proxy)...),
		},
		{
			name: "as many backends as backend indexes fit, over several services",
			src:  l4Config(service{ForwardingL2DSR, bpf.MaxBackends / 2}, service{ForwardingIPIP, bpf.MaxBackends / 2}),
		},
		{
			name: "one backend more than backend indexes is refused at that backend",
			src:  l4Config(service{ForwardingL2DSR, bpf.MaxBackends / 2}, service{ForwardingIPIP, bpf.MaxBackends/2 + 1}),
			msg:  "backends: the XDP maps hold 4096 backends over all l4 services (forwarding proxy not counted) and this is one more",
			at:   fmt.Sprintf("{name: b%d,", bpf.MaxBackends/2),
		},
		{
			name: "backends of services with forwarding proxy do not take backend indexes",
			src:  l4Config(service{ForwardingL2DSR, bpf.MaxBackends}, service{ForwardingProxy, 10}),
		},
		{
			name: "a service of 1000 backends takes the largest table by default",
			src:  l4Config(service{ForwardingL2DSR, 1000}),
		},
		{
			name: "for 1000 backends validation suggests the largest table the maps hold, not 100003",
			src:  l4Config(service{ForwardingL2DSR, 1000}) + "    maglev_size: 1009\n",
			msg:  "maglev_size: 1009 is less than 100 × 1000 backends, which skews load; try 65537, the largest table the XDP maps hold",
			at:   "1009",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.src), "big.yaml")
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("Parse: %v", clip(err.Error(), 2000))
				}
				if len(c.Services) == 0 {
					t.Fatal("Parse returned no services")
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("Parse = %v; want one problem", clip(fmt.Sprint(err), 2000))
			}
			if es[0].Msg != tc.msg {
				t.Errorf("problem %q, want %q", es[0].Msg, tc.msg)
			}
			if got := textAt(tc.src, es[0].Line, es[0].Col); !strings.HasPrefix(got, tc.at) {
				t.Errorf("problem at %d:%d, which holds %q; want it at %q", es[0].Line, es[0].Col, clip(got, 20), tc.at)
			}
		})
	}
}
