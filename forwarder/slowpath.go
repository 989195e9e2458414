package forwarder

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/xsk"
)

// The slow path (DESIGN.md "Encrypted CIDs"): XDP cannot run AES, so it
// redirects a datagram whose DCID of an encrypted QUIC-LB config misses
// cid_cache to an AF_XDP socket of its RX queue. Go decides it with the
// Router (the same decision lb.c makes, plus decryption: draft-21 §5.5),
// transmits the frame lb.c would have sent (bpf.RewriteL2DSR, bpf.Encap)
// on the socket's TX ring and puts DCID → backend into cid_cache, so the
// connection's next datagrams stay in XDP. A DCID that does not decrypt to
// a usable server ID is routed by the flow table and Maglev and not
// cached: only real connections' CIDs enter the cache, and a hit refreshes
// an entry of the LRU, so a flood of made-up DCIDs (bounded by XDP's
// per-VIP limit besides) cannot push live connections out. With
// --dataplane userspace XDP redirects every datagram of the VIPs and Go
// makes every decision.

// slowBatch is how many frames a worker takes from its RX ring at once,
// and how many DCIDs it writes to cid_cache in one batch.
const slowBatch = 64

// SlowPathOptions configure StartSlowPath.
type SlowPathOptions struct {
	// Ifindex is the interface XDP runs on. Required.
	Ifindex int
	// Queues is the number of its RX queues; one socket each. If zero, 1.
	Queues int
	// Socket configures each socket; copy mode works on every driver and
	// with XDP in generic mode. If nil, xsk defaults in copy mode.
	Socket *xsk.Options
	// Logger receives problems. If nil, slog.Default().
	Logger *slog.Logger
}

// SlowPath is the AF_XDP sockets of one interface and the workers that
// forward what XDP hands them.
type SlowPath struct {
	objs    *bpf.LBObjects
	router  *Router
	log     *slog.Logger
	workers []*slowWorker
	stop    chan struct{}
	wg      sync.WaitGroup
	stats   slowStats
	// ringDropsBase: drop_slow_path_ring as an earlier run left it.
	ringDropsBase uint64
	closed        sync.Once
	closeErr      error
}

// StartSlowPath opens a socket on each RX queue, registers it in the XDP
// program's xsks map and starts its worker. Nothing is forwarded until
// Update. It must run in the interface's network namespace.
func StartSlowPath(objs *bpf.LBObjects, opts SlowPathOptions) (*SlowPath, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	queues := max(opts.Queues, 1)
	if queues > bpf.MaxQueues {
		log.Warn("slow path: more RX queues than xsks holds; the rest hash encrypted misses", "queues", queues, "max", bpf.MaxQueues)
		queues = bpf.MaxQueues
	}
	so := xsk.Options{Mode: xsk.ModeCopy}
	if opts.Socket != nil {
		so = *opts.Socket
	}
	sp := &SlowPath{objs: objs, log: log, stop: make(chan struct{})}
	sp.router = newSlowPathRouter()
	if err := sp.stats.load(objs); err != nil {
		log.Warn("slow path: counters start from zero", "err", err)
	}
	if err := sp.loadReasons(); err != nil {
		log.Warn("slow path: reason counters start from zero", "err", err)
	}
	for q := range queues {
		s, err := xsk.Open(opts.Ifindex, q, &so)
		if err != nil {
			if q == 0 {
				return nil, fmt.Errorf("slow path: %w", err)
			}
			// Fewer queues in use than the device has.
			log.Warn("slow path: queue has no socket; its encrypted misses are hashed", "queue", q, "err", err)
			break
		}
		w := &slowWorker{sp: sp, sock: s}
		sp.workers = append(sp.workers, w)
	}
	for _, w := range sp.workers {
		if err := w.sock.Register(objs.Xsks); err != nil {
			sp.Close()
			return nil, fmt.Errorf("slow path: %w", err)
		}
	}
	for _, w := range sp.workers {
		sp.wg.Add(1)
		go w.run()
	}
	sp.wg.Add(1)
	go sp.flushStats()
	return sp, nil
}

// newSlowPathRouter returns a Router that decides what XDP redirected: its
// CID table is sized up front, so that filling it does not allocate per
// packet.
func newSlowPathRouter() *Router {
	r := &Router{behindXDP: true}
	r.tables.init(slowRouterCIDs)
	r.tables.direct = make([]cidSlot, slowRouterCIDs)
	r.tables.seed = rand.Uint64()
	r.state.Store(newRouteState(&Desired{}, nil, bpf.LBConfig{}))
	return r
}

// slowRouterCIDs is the size of the Router's own CID table (a power of
// two): the DCIDs the workers learnt, which they also route by while
// cid_cache has not caught up (and which are the only cache for
// --dataplane userspace). Direct mapped: a DCID that lost its slot is
// decrypted again, which costs less than keeping an LRU.
const slowRouterCIDs = 1 << 16

// Update makes the slow path decide by d, with decoders (by VIP id) for
// the VIPs with encrypted configs.
func (sp *SlowPath) Update(d *Desired, decoders map[uint32]*cid.Decoder) {
	sp.router.Update(d, decoders)
}

// SetLB sets the load balancer's MAC and ipip sources, as in the config map.
func (sp *SlowPath) SetLB(c bpf.LBConfig) { sp.router.SetLB(c) }

// Router returns the slow path's Router (its counters are reason_stats
// of what Go decided).
func (sp *SlowPath) Router() *Router { return sp.router }

// Queues returns how many RX queues have a socket.
func (sp *SlowPath) Queues() int { return len(sp.workers) }

// Close stops the workers, takes the sockets out of xsks (misses are then
// hashed in XDP) and writes the counters a last time.
func (sp *SlowPath) Close() error {
	sp.closed.Do(func() {
		close(sp.stop)
		sp.wg.Wait()
		var errs []error
		for _, w := range sp.workers {
			errs = append(errs, w.sock.Unregister(sp.objs.Xsks))
		}
		errs = append(errs, sp.stats.store(sp.objs), sp.storeReasons())
		for _, w := range sp.workers {
			errs = append(errs, w.sock.Close())
		}
		sp.closeErr = errors.Join(errs...)
	})
	return sp.closeErr
}

// slowWorker serves one RX queue. Its buffers are reused for every batch.
type slowWorker struct {
	sp    *SlowPath
	sock  *xsk.Socket
	descs [slowBatch]xsk.Desc
	keys  [slowBatch]bpf.CIDKey
	vals  [slowBatch]uint32
	n     int // learnt DCIDs waiting in keys/vals
	// lastStats are the socket's counters as last logged.
	lastStats unix.XDPStatistics
}

func (w *slowWorker) run() {
	defer w.sp.wg.Done()
	for {
		select {
		case <-w.sp.stop:
			return
		default:
		}
		ok, err := w.sock.Wait(100 * time.Millisecond)
		if err != nil {
			w.sp.log.Warn("slow path: wait for frames", "queue", w.sock.Queue(), "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if ok {
			w.batch()
		}
	}
}

// batch forwards what the RX ring holds, up to slowBatch frames.
func (w *slowWorker) batch() {
	n := w.sock.Receive(w.descs[:])
	for _, d := range w.descs[:n] {
		w.forward(d)
	}
	w.learn()
	if err := w.sock.Flush(); err != nil {
		w.sp.log.Warn("slow path: transmit", "queue", w.sock.Queue(), "err", err)
	}
}

// forward decides one frame and transmits it, or gives it back.
func (w *slowWorker) forward(d xsk.Desc) {
	head := w.sock.Headroom(d)
	// The whole frame buffer: headroom, then the packet.
	buf, ok := w.sock.Frame(xsk.Desc{Addr: d.Addr - uint64(head), Len: uint32(head) + d.Len})
	if !ok {
		return // not ours: the kernel never hands out such a descriptor
	}
	start, dec, vip := decide(w.sp.router, buf, head)
	if start < 0 {
		if vip >= 0 {
			w.sp.stats.other(uint32(vip))
		}
		w.sock.Release(d)
		return
	}
	out, _ := w.sock.Resize(d, head-start, len(buf)-start)
	if !w.sock.Send(out) {
		// The TX ring is full: let the kernel catch up once.
		_ = w.sock.Flush()
		if !w.sock.Send(out) {
			w.sp.stats.other(uint32(vip))
			w.sock.Release(d)
			return
		}
	}
	w.sp.stats.forwarded(uint32(vip), dec.Path, dec.Backend, int(d.Len))
	if dec.Learned {
		w.keys[w.n], w.vals[w.n] = dec.CIDKey, dec.Backend
		w.n++
	}
}

// decide is the slow path's work on one frame, the AF_XDP receive path's
// parser and builder: buf[head:] is the frame XDP redirected, buf[:head]
// room in front of it. It decides the frame with r and builds in buf the
// frame lb.c would send (MACs rewritten in place for l2dsr; for ipip the
// outer header written in front, moving the start back). It returns where
// the frame to transmit starts (-1: not forwarded, as XDP would pass or
// drop it, with nowhere to pass to), the decision, and the VIP's id (-1
// if the frame is for no VIP).
func decide(r *Router, buf []byte, head int) (start int, dec Decision, vip int) {
	var to routeTo
	f := buf[head:]
	dec = r.routeFrame(f, &to)
	if to.vip == nil {
		return -1, dec, -1
	}
	vip = int(to.vip.info.Id)
	if dec.Verdict != VerdictTX || int(dec.Backend) >= len(to.st.backends) {
		return -1, dec, vip
	}
	be := &to.st.backends[dec.Backend]
	if to.vip.info.Forwarding == bpf.ForwardingIPIP {
		extra := bpf.EncapLen(be)
		if extra > head {
			return -1, dec, vip
		}
		if err := bpf.Encap(buf[head-extra:], be, &to.st.lb); err != nil {
			return -1, dec, vip
		}
		return head - extra, dec, vip
	}
	if err := bpf.RewriteL2DSR(f, be, &to.st.lb); err != nil {
		return -1, dec, vip
	}
	return head, dec, vip
}

// learn writes the DCIDs of the batch into cid_cache in one system call.
func (w *slowWorker) learn() {
	if w.n == 0 {
		return
	}
	if _, err := w.sp.objs.CidCache.BatchUpdate(w.keys[:w.n], w.vals[:w.n], nil); err != nil {
		w.sp.log.Warn("slow path: cache connection ids", "count", w.n, "err", err)
	}
	w.n = 0
}

// slowStats are the per-VIP counters of slow_path_stats, kept in Go and
// written to the map every second (a restarted daemon continues from the
// values stored).
type slowStats struct {
	c [bpf.MaxVIPs]struct {
		cid, cidCache, flow, maglev, other, bytes atomic.Uint64
	}
	// be are per backend index (slow_path_backend_stats).
	be [bpf.MaxBackends]struct {
		packets, bytes atomic.Uint64
	}
}

func (s *slowStats) forwarded(vip uint32, p Path, backend uint32, n int) {
	if vip >= bpf.MaxVIPs {
		return
	}
	if backend < bpf.MaxBackends {
		s.be[backend].packets.Add(1)
		s.be[backend].bytes.Add(uint64(n))
	}
	c := &s.c[vip]
	switch p {
	case PathCID:
		c.cid.Add(1)
	case PathCIDCache:
		c.cidCache.Add(1)
	case PathFlow:
		c.flow.Add(1)
	case PathMaglev:
		c.maglev.Add(1)
	}
	c.bytes.Add(uint64(n))
}

func (s *slowStats) other(vip uint32) {
	if vip < bpf.MaxVIPs {
		s.c[vip].other.Add(1)
	}
}

// load starts the counters from the values an earlier run stored.
func (s *slowStats) load(objs *bpf.LBObjects) error {
	var v bpf.SlowPathCounters
	for i := range uint32(bpf.MaxVIPs) {
		if err := objs.SlowPathStats.Lookup(i, &v); err != nil {
			return fmt.Errorf("read slow_path_stats: %w", err)
		}
		c := &s.c[i]
		c.cid.Store(v.Cid)
		c.cidCache.Store(v.CidCache)
		c.flow.Store(v.Flow)
		c.maglev.Store(v.Maglev)
		c.other.Store(v.Other)
		c.bytes.Store(v.Bytes)
	}
	var b bpf.BackendCounters
	for i := range uint32(bpf.MaxBackends) {
		if err := objs.SlowPathBackendStats.Lookup(i, &b); err != nil {
			return fmt.Errorf("read slow_path_backend_stats: %w", err)
		}
		s.be[i].packets.Store(b.Packets)
		s.be[i].bytes.Store(b.Bytes)
	}
	return nil
}

// store writes the counters of every VIP that has any.
func (s *slowStats) store(objs *bpf.LBObjects) error {
	for i := range uint32(bpf.MaxVIPs) {
		c := &s.c[i]
		v := bpf.SlowPathCounters{Cid: c.cid.Load(), CidCache: c.cidCache.Load(), Flow: c.flow.Load(),
			Maglev: c.maglev.Load(), Other: c.other.Load(), Bytes: c.bytes.Load()}
		if v == (bpf.SlowPathCounters{}) {
			continue
		}
		if err := objs.SlowPathStats.Put(i, v); err != nil {
			return fmt.Errorf("write slow_path_stats: %w", err)
		}
	}
	// One system call for every backend's counters.
	keys := make([]uint32, bpf.MaxBackends)
	vals := make([]bpf.BackendCounters, bpf.MaxBackends)
	for i := range keys {
		keys[i] = uint32(i)
		vals[i] = bpf.BackendCounters{Packets: s.be[i].packets.Load(), Bytes: s.be[i].bytes.Load()}
	}
	if _, err := objs.SlowPathBackendStats.BatchUpdate(keys, vals, nil); err != nil {
		return fmt.Errorf("write slow_path_backend_stats: %w", err)
	}
	return nil
}

// slowStatsEvery is how often the counters reach slow_path_stats.
const slowStatsEvery = 200 * time.Millisecond

func (sp *SlowPath) flushStats() {
	defer sp.wg.Done()
	t := time.NewTicker(slowStatsEvery)
	defer t.Stop()
	for {
		select {
		case <-sp.stop:
			return
		case <-t.C:
			if err := errors.Join(sp.stats.store(sp.objs), sp.storeReasons()); err != nil {
				sp.log.Warn("slow path: counters", "err", err)
			}
		}
	}
}

// loadReasons continues the Router's reason counts from slow_path_reasons.
func (sp *SlowPath) loadReasons() error {
	for r := range sp.router.counts {
		var v uint64
		if err := sp.objs.SlowPathReasons.Lookup(uint32(r), &v); err != nil {
			return fmt.Errorf("read slow_path_reasons: %w", err)
		}
		if bpf.Reason(r) == reasonDropSlowPathRing {
			sp.ringDropsBase = v
			continue
		}
		sp.router.counts[r].Store(v)
	}
	return nil
}

// ringDrops returns the frames the kernel dropped on the way to the
// sockets since they were opened (XDP_STATISTICS): RX ring full, or no
// frame in the fill ring.
func (sp *SlowPath) ringDrops() uint64 {
	var n uint64
	for _, w := range sp.workers {
		if st, err := w.sock.Stats(); err == nil {
			n += st.Rx_dropped + st.Rx_ring_full
			if st != w.lastStats {
				w.lastStats = st
				sp.log.Debug("slow path socket", "queue", w.sock.Queue(), "rx_dropped", st.Rx_dropped, "rx_ring_full", st.Rx_ring_full,
					"fill_ring_empty", st.Rx_fill_ring_empty_descs, "rx_invalid", st.Rx_invalid_descs, "tx_invalid", st.Tx_invalid_descs)
			}
		}
	}
	return n
}

// storeReasons writes the Router's reason counts to slow_path_reasons.
func (sp *SlowPath) storeReasons() error {
	counts := sp.router.ReasonCounts()
	counts[reasonDropSlowPathRing] = sp.ringDropsBase + sp.ringDrops()
	keys := make([]uint32, len(counts))
	for i := range keys {
		keys[i] = uint32(i)
	}
	if _, err := sp.objs.SlowPathReasons.BatchUpdate(keys, counts[:], nil); err != nil {
		return fmt.Errorf("write slow_path_reasons: %w", err)
	}
	return nil
}
