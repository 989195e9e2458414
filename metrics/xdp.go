package metrics

import (
	"log/slog"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/spooky-lb/spooky/forwarder"
)

var (
	xdpUpDesc = prometheus.NewDesc(namespace+"_xdp_up",
		"Whether the XDP counters could be read at this scrape (1) or not (0: not attached, maps not pinned).",
		nil, nil)
	xdpVIPPacketsDesc = prometheus.NewDesc(namespace+"_xdp_vip_packets_total",
		"Packets XDP forwarded for a VIP, by routing path: cid (server ID in the CID), cid_cache (decrypted CID), flow (flow table), maglev (hash).",
		[]string{"service", "vip", "path"}, nil)
	xdpVIPBytesDesc = prometheus.NewDesc(namespace+"_xdp_vip_bytes_total",
		"Bytes (whole frames) XDP forwarded for a VIP.",
		[]string{"service", "vip"}, nil)
	xdpBackendPacketsDesc = prometheus.NewDesc(namespace+"_xdp_backend_packets_total",
		"Packets XDP forwarded to a backend.",
		[]string{"service", "backend"}, nil)
	xdpBackendBytesDesc = prometheus.NewDesc(namespace+"_xdp_backend_bytes_total",
		"Bytes (whole frames, before encapsulation) XDP forwarded to a backend.",
		[]string{"service", "backend"}, nil)
	xdpBackendStateDesc = prometheus.NewDesc(namespace+"_xdp_backend_state",
		"A backend's state as programmed in the XDP maps (healthy, draining, unusable); 1 for the current state, 0 for the others.",
		[]string{"service", "backend", "state"}, nil)
	xdpPacketsDesc = prometheus.NewDesc(namespace+"_xdp_packets_total",
		"Packets XDP handled, by verdict (tx, pass, drop) and its reason; each packet is counted once.",
		[]string{"verdict", "reason"}, nil)
	xdpEventsDesc = prometheus.NewDesc(namespace+"_xdp_events_total",
		"Events XDP met on the way to a verdict (IPv4 options, non-QUIC packets hashed, CID lookups that fell through); a packet may count several.",
		[]string{"event"}, nil)
)

// Routing paths of spooky_xdp_vip_packets_total, as lb.c's enum route_path.
var vipPaths = [...]string{"cid", "cid_cache", "flow", "maglev"}

// xdpBackendStates are the states forwarder.BackendStats reports for a
// backend slot in use.
var xdpBackendStates = [...]string{"healthy", "draining", "unusable"}

// xdpCollector reads the XDP counters when scraped: there is no polling
// loop, and the per-CPU values are summed by the read (forwarder.ReadStats).
type xdpCollector struct {
	read func() (*forwarder.Stats, error)
	log  *slog.Logger

	mu      sync.Mutex
	lastErr string // the last read error logged, so a lasting one is logged once
}

func newXDPCollector(read func() (*forwarder.Stats, error), log *slog.Logger) *xdpCollector {
	return &xdpCollector{read: read, log: log}
}

func (c *xdpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{xdpUpDesc, xdpVIPPacketsDesc, xdpVIPBytesDesc,
		xdpBackendPacketsDesc, xdpBackendBytesDesc, xdpBackendStateDesc, xdpPacketsDesc, xdpEventsDesc} {
		ch <- d
	}
}

func (c *xdpCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.read()
	c.noteError(err)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(xdpUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(xdpUpDesc, prometheus.GaugeValue, 1)
	collectVIPs(ch, st.VIPs)
	collectBackends(ch, st.Backends)
	for reason, n := range st.Reasons {
		if verdict := reasonVerdict(reason); verdict != "" {
			ch <- prometheus.MustNewConstMetric(xdpPacketsDesc, prometheus.CounterValue, float64(n), verdict, reason)
		} else {
			ch <- prometheus.MustNewConstMetric(xdpEventsDesc, prometheus.CounterValue, float64(n), reason)
		}
	}
}

// noteError logs a read error when it first appears and when reads
// recover, not at every scrape.
func (c *xdpCollector) noteError(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case err != nil && err.Error() != c.lastErr:
		c.lastErr = err.Error()
		c.log.Warn("read xdp counters", "error", err)
	case err == nil && c.lastErr != "":
		c.lastErr = ""
		c.log.Info("read xdp counters again")
	}
}

// vipKey is one VIP's label set. A VIP appears once in the vips map, but
// the labels are summed anyway: two label sets that collide would make
// the whole scrape invalid.
type vipKey struct{ service, vip string }

func collectVIPs(ch chan<- prometheus.Metric, vips []forwarder.VIPStats) {
	type sums struct {
		paths [len(vipPaths)]uint64
		bytes uint64
	}
	byKey := map[vipKey]*sums{}
	for _, v := range vips {
		k := vipKey{v.Service, v.Address.String()}
		s := byKey[k]
		if s == nil {
			s = &sums{}
			byKey[k] = s
		}
		// lb.c counts every forwarded packet under exactly one path, so
		// the paths sum to the VIP's packets.
		for i, n := range [len(vipPaths)]uint64{v.CID, v.CIDCache, v.Flow, v.Maglev} {
			s.paths[i] += n
		}
		s.bytes += v.Bytes
	}
	for k, s := range byKey {
		for i, path := range vipPaths {
			ch <- prometheus.MustNewConstMetric(xdpVIPPacketsDesc, prometheus.CounterValue, float64(s.paths[i]), k.service, k.vip, path)
		}
		ch <- prometheus.MustNewConstMetric(xdpVIPBytesDesc, prometheus.CounterValue, float64(s.bytes), k.service, k.vip)
	}
}

// backendKey is one backend's label set.
type backendKey struct{ service, backend string }

func collectBackends(ch chan<- prometheus.Metric, backends []forwarder.BackendStats) {
	type sums struct {
		packets, bytes uint64
		state          string
	}
	byKey := map[backendKey]*sums{}
	for _, b := range backends {
		// A slot without a name was removed by a reload (or never named
		// by the daemon); its leftover counts belong to no configured
		// backend, and labelling them by slot would leak slot numbers
		// into the series.
		svc, be, ok := strings.Cut(b.Name, "/")
		if !ok {
			continue
		}
		k := backendKey{svc, be}
		s := byKey[k]
		if s == nil {
			s = &sums{}
			byKey[k] = s
		}
		s.packets += b.Packets
		s.bytes += b.Bytes
		if b.State != "removed" {
			s.state = b.State
		}
	}
	for k, s := range byKey {
		ch <- prometheus.MustNewConstMetric(xdpBackendPacketsDesc, prometheus.CounterValue, float64(s.packets), k.service, k.backend)
		ch <- prometheus.MustNewConstMetric(xdpBackendBytesDesc, prometheus.CounterValue, float64(s.bytes), k.service, k.backend)
		if s.state == "" {
			continue
		}
		for _, state := range xdpBackendStates {
			ch <- prometheus.MustNewConstMetric(xdpBackendStateDesc, prometheus.GaugeValue, boolValue(state == s.state), k.service, k.backend, state)
		}
	}
}

// reasonVerdict returns the verdict a reason ends a packet with (tx, pass,
// drop), or "" for an event counted on the way. The names are lb.c's enum
// reason (bpf.Reason.String): REASON_TX, REASON_PASS_*, REASON_DROP_* and
// REASON_REDIRECT_* (to the slow path's AF_XDP sockets) are verdicts, the
// rest events.
func reasonVerdict(reason string) string {
	switch {
	case reason == "tx":
		return "tx"
	case strings.HasPrefix(reason, "redirect_"):
		return "redirect"
	case strings.HasPrefix(reason, "pass_"):
		return "pass"
	case strings.HasPrefix(reason, "drop_"):
		return "drop"
	}
	return ""
}
