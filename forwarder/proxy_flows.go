package forwarder

import (
	"net/netip"

	"github.com/spooky-lb/spooky/bpf"
)

// expireFlow forgets the flow table entry of a proxy session that expired
// (src to vip, sent to backend), as XDP's sweep expires an idle flow_cache
// entry after flow_timeout (XDP.ExpireFlows): the client's next datagram
// is decided afresh. An entry that another flow has taken since, or that
// points elsewhere, is left alone.
func (r *Router) expireFlow(vip, src netip.AddrPort, backend uint32) {
	v := r.state.Load().vips[bpf.NewVIPKey(vip)]
	if v == nil {
		return
	}
	k := bpf.NewFlowKey(v.info.Id, src)
	t := &r.tables
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cache == nil {
		return
	}
	if e := &t.cache[bpf.FlowCacheSlot(k)]; e.valid && e.key == k && e.backend == backend {
		*e = flowCacheEntry{}
		t.cached--
	}
}
