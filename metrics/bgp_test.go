package metrics

import (
	"testing"
)

func TestBGPPeersAndRoutesAreExported(t *testing.T) {
	fams := mustScrape(t, mustPopulated(t).m)
	up := map[string]float64{}
	for _, m := range fams["spooky_bgp_peer_up"].GetMetric() {
		up[labelsOf(m)["peer"]+" AS"+labelsOf(m)["asn"]] = m.GetGauge().GetValue()
	}
	if len(up) != 2 || up["198.18.0.254 AS65000"] != 1 || up["2001:db8::fe AS65000"] != 0 {
		t.Errorf("spooky_bgp_peer_up = %v, want the established IPv4 peer 1 and the IPv6 one 0", up)
	}
	routes := fams["spooky_bgp_route_announced"].GetMetric()
	if len(routes) != 1 || labelsOf(routes[0])["prefix"] != "198.18.0.10/32" || routes[0].GetGauge().GetValue() != 1 {
		t.Errorf("spooky_bgp_route_announced = %v, want 198.18.0.10/32 only", routes)
	}
}

func TestNoBGPMetricsWithoutASpeaker(t *testing.T) {
	m := New(Options{BGP: func() *BGPState { return nil }})
	fams := mustScrape(t, m)
	for _, name := range []string{"spooky_bgp_peer_up", "spooky_bgp_route_announced"} {
		if _, ok := fams[name]; ok {
			t.Errorf("%s exported with no speaker running", name)
		}
	}
}
