package metrics

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/forwarder"
)

func TestXDPCountersAreExportedAsCounters(t *testing.T) {
	fams := mustScrape(t, mustPopulated(t).m)
	for _, name := range []string{"spooky_xdp_vip_packets_total", "spooky_xdp_vip_bytes_total",
		"spooky_xdp_backend_packets_total", "spooky_xdp_backend_bytes_total",
		"spooky_xdp_packets_total", "spooky_xdp_events_total"} {
		wantType(t, fams, name, dto.MetricType_COUNTER)
	}
	tests := []struct {
		name   string
		metric string
		labels map[string]string
		want   float64
	}{
		{"the read succeeded", "spooky_xdp_up", nil, 1},
		{"a VIP counts packets routed by server ID", "spooky_xdp_vip_packets_total", l("service", "web", "vip", "198.18.0.10:443", "path", "cid"), 10},
		{"a VIP counts packets routed by the cid cache", "spooky_xdp_vip_packets_total", l("service", "web", "vip", "198.18.0.10:443", "path", "cid_cache"), 2},
		{"a VIP counts packets routed by the flow table", "spooky_xdp_vip_packets_total", l("service", "web", "vip", "198.18.0.10:443", "path", "flow"), 3},
		{"a VIP counts packets routed by Maglev", "spooky_xdp_vip_packets_total", l("service", "web", "vip", "198.18.0.10:443", "path", "maglev"), 5},
		{"a path with no packets is exported as zero", "spooky_xdp_vip_packets_total", l("service", "web", "vip", "[2001:db8::10]:443", "path", "cid"), 0},
		{"an IPv6 VIP is labelled with its bracketed address", "spooky_xdp_vip_packets_total", l("service", "web", "vip", "[2001:db8::10]:443", "path", "maglev"), 6},
		{"a VIP counts bytes", "spooky_xdp_vip_bytes_total", l("service", "web", "vip", "198.18.0.10:443"), 24000},
		{"a backend counts packets under its service and name", "spooky_xdp_backend_packets_total", l("service", "web", "backend", "b1"), 15},
		{"a backend counts bytes", "spooky_xdp_backend_bytes_total", l("service", "web", "backend", "b2"), 15100},
		{"a backend's XDP state is one-hot: draining is 1", "spooky_xdp_backend_state", l("service", "web", "backend", "b2", "state", "draining"), 1},
		{"a backend's XDP state is one-hot: healthy is 0", "spooky_xdp_backend_state", l("service", "web", "backend", "b2", "state", "healthy"), 0},
		{"forwarded packets are the tx verdict", "spooky_xdp_packets_total", l("verdict", "tx", "reason", "tx"), 27},
		{"passed packets carry their reason", "spooky_xdp_packets_total", l("verdict", "pass", "reason", "pass_not_vip"), 4},
		{"dropped packets carry their reason", "spooky_xdp_packets_total", l("verdict", "drop", "reason", "drop_truncated"), 1},
		{"events on the way are a family of their own", "spooky_xdp_events_total", l("event", "not_quic"), 3},
		{"events that never happened are exported as zero", "spooky_xdp_events_total", l("event", "cid_unknown_server"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustValue(t, fams, tt.metric, tt.labels); got != tt.want {
				t.Errorf("%s%v = %v, want %v", tt.metric, tt.labels, got, tt.want)
			}
		})
	}
	t.Run("a removed backend slot is not exported", func(t *testing.T) {
		for _, m := range fams["spooky_xdp_backend_packets_total"].GetMetric() {
			if b := labelsOf(m)["backend"]; b != "b1" && b != "b2" {
				t.Errorf("unexpected backend series %v", labelsOf(m))
			}
		}
	})
	t.Run("the paths of a VIP sum to its forwarded packets", func(t *testing.T) {
		var sum float64
		for _, path := range vipPaths {
			sum += mustValue(t, fams, "spooky_xdp_vip_packets_total", l("service", "web", "vip", "198.18.0.10:443", "path", path))
		}
		if sum != 20 {
			t.Errorf("sum over paths = %v, want the VIP's 20 packets", sum)
		}
	})
}

func TestXDPCountersAreReadAtEachScrape(t *testing.T) {
	var reads int
	m := New(Options{XDPStats: func() (*forwarder.Stats, error) {
		reads++
		st := fakeStats()
		st.Backends[0].Packets = uint64(100 * reads)
		return st, nil
	}})
	for want := 1; want <= 2; want++ {
		fams := mustScrape(t, m)
		if reads != want {
			t.Fatalf("after scrape %d the counters were read %d times", want, reads)
		}
		if got := mustValue(t, fams, "spooky_xdp_backend_packets_total", l("service", "web", "backend", "b1")); got != float64(100*want) {
			t.Errorf("scrape %d: b1 packets = %v, want %v", want, got, 100*want)
		}
	}
}

func TestXDPReadErrorKeepsTheRestOfTheScrape(t *testing.T) {
	m := New(Options{XDPStats: func() (*forwarder.Stats, error) {
		return nil, errors.New("open pinned map vips: no such file or directory")
	}})
	m.ObserveReload(true, "aaaa")
	fams := mustScrape(t, m)
	if got := mustValue(t, fams, "spooky_xdp_up", nil); got != 0 {
		t.Errorf("spooky_xdp_up = %v on a failing read, want 0", got)
	}
	if _, ok := fams["spooky_xdp_packets_total"]; ok {
		t.Error("a failing read still exported spooky_xdp_packets_total")
	}
	if got := mustValue(t, fams, "spooky_config_info", l("sha256", "aaaa")); got != 1 {
		t.Errorf("spooky_config_info = %v beside a failing XDP read, want 1", got)
	}
}

func TestXDPDuplicateLabelSetsAreSummed(t *testing.T) {
	// Two slots under one name (a backend re-added into a new slot before
	// the old one's name was cleared) must not make the scrape invalid.
	m := New(Options{XDPStats: func() (*forwarder.Stats, error) {
		return &forwarder.Stats{Backends: []forwarder.BackendStats{
			{Index: 3, Name: "web/b1", State: "removed", Packets: 5},
			{Index: 7, Name: "web/b1", State: "healthy", Packets: 6},
		}}, nil
	}})
	fams := mustScrape(t, m)
	if got := mustValue(t, fams, "spooky_xdp_backend_packets_total", l("service", "web", "backend", "b1")); got != 11 {
		t.Errorf("b1 packets = %v, want 5+6", got)
	}
	if got := mustValue(t, fams, "spooky_xdp_backend_state", l("service", "web", "backend", "b1", "state", "healthy")); got != 1 {
		t.Errorf("b1 healthy = %v, want the live slot's state", got)
	}
}

// TestEveryXDPReasonIsAVerdictOrAnEvent reads the reason names from the
// compiled BPF object, so a reason added or renamed in spooky.h shows up
// here: verdicts are counted once per packet, events are not.
func TestEveryXDPReasonIsAVerdictOrAnEvent(t *testing.T) {
	wantEvents := []string{
		"cid_backend_unusable", "cid_cache_miss", "cid_no_config", "cid_too_long", "cid_too_short",
		"cid_unknown_server", "flow_backend_unusable", "flow_insert_failed", "ip_options", "not_quic",
		"slow_path_limited", "slow_path_no_socket",
	}
	var events []string
	verdicts := map[string]int{}
	for r := range bpf.NumReasons {
		name := bpf.Reason(r).String()
		if name == fmt.Sprintf("reason_%d", r) {
			t.Fatalf("reason %d has no name in the BPF object's BTF", r)
		}
		if v := reasonVerdict(name); v != "" {
			verdicts[v]++
		} else {
			events = append(events, name)
		}
	}
	slices.Sort(events)
	if !slices.Equal(events, wantEvents) {
		t.Errorf("events = %v, want %v (lb.c counts these with count(), not verdict())", events, wantEvents)
	}
	if verdicts["tx"] != 1 || verdicts["pass"] == 0 || verdicts["drop"] == 0 {
		t.Errorf("verdicts = %v, want one tx and some pass and drop", maps.Clone(verdicts))
	}
}
