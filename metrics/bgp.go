package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// BGPPeer is one BGP session as the metrics export it.
type BGPPeer struct {
	// Address is the router's address, as the config writes it.
	Address string
	ASN     uint32
	// Established says whether the session carries routes.
	Established bool
}

// BGPState is what the daemon's BGP speaker reports at scrape time.
type BGPState struct {
	Peers []BGPPeer
	// Routes are the prefixes announced now (a VIP's /32 or /128).
	Routes []string
}

var (
	bgpPeerUpDesc = prometheus.NewDesc(namespace+"_bgp_peer_up",
		"1 if the BGP session with the router is established, 0 if not. Peers come from the bgp section of the config.",
		[]string{"peer", "asn"}, nil)
	bgpRouteDesc = prometheus.NewDesc(namespace+"_bgp_route_announced",
		"1 for each VIP host route this host announces to its BGP peers now; a withdrawn route is absent.",
		[]string{"prefix"}, nil)
)

// bgpCollector exports the speaker's sessions and routes at scrape time.
type bgpCollector struct {
	read func() *BGPState
}

func (c *bgpCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bgpPeerUpDesc
	ch <- bgpRouteDesc
}

func (c *bgpCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.read()
	if st == nil {
		return // no bgp section
	}
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(bgpPeerUpDesc, prometheus.GaugeValue,
			boolValue(p.Established), p.Address, strconv.FormatUint(uint64(p.ASN), 10))
	}
	for _, r := range st.Routes {
		ch <- prometheus.MustNewConstMetric(bgpRouteDesc, prometheus.GaugeValue, 1, r)
	}
}
