package forwarder

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// A proxy worker owns one of a VIP's SO_REUSEPORT sockets and the
// sessions of the clients the kernel hashes to it (the 4-tuple hash keeps
// a client address on one socket), so its session table needs no lock. It
// runs one epoll loop over the VIP socket, its sessions' upstream sockets
// and a wake-up eventfd.

// Epoll tags of the two sockets that are not sessions (in EpollEvent.Pad;
// a session's tag is its slot).
const (
	tagVIP  = -1
	tagWake = -2
)

// proxyBatch is how many messages one recvmmsg or sendmmsg moves.
const proxyBatch = 32

// proxySweepEvery is how often idle sessions are looked for; a session
// outlives its flow_timeout by at most this.
const proxySweepEvery = time.Second

// sessionKey names a session: the client's address and port (IPv4 as
// IPv4-mapped) and the backend the decision chose. One client address
// normally has one session; a second one exists only while the decision
// sends its datagrams elsewhere (a connection ID of another backend, a
// backend that became unusable).
type sessionKey struct {
	addr    [16]byte
	port    uint16
	backend uint32
}

// proxySession is one client's flow to one backend, over a socket
// connected to the backend.
type proxySession struct {
	fd        int
	slot      int32
	key       sessionKey
	client    unix.RawSockaddrInet6
	clientLen uint32
	target    *proxyTarget
	last      int64 // monotonic ns of the last datagram either way
}

type proxyWorker struct {
	p    *Proxy
	svc  *proxyService
	fd   int // the VIP socket
	gro  bool
	gso  bool
	ep   int
	wake int // eventfd

	sessions map[sessionKey]*proxySession
	slots    []*proxySession
	free     []int32
	lastHit  *proxySession

	rx     *rxBatch // from clients
	rxUp   *rxBatch // from backends
	tx     *txBatch // to one backend
	txTo   *proxySession
	txc    *txBatch // to clients, on the VIP socket
	events []unix.EpollEvent

	ctr       *proxyCounters
	now       int64
	lastSweep int64
	done      chan struct{}
}

func newProxyWorker(p *Proxy, svc *proxyService, ctr *proxyCounters) (*proxyWorker, error) {
	fd, gro, err := listenVIP(svc.vip)
	if err != nil {
		return nil, err
	}
	w := &proxyWorker{
		p: p, svc: svc, fd: fd, gro: gro, gso: true, ep: -1, wake: -1,
		sessions: map[sessionKey]*proxySession{},
		rx:       newRxBatch(proxyBatch, p.bufSize),
		rxUp:     newRxBatch(proxyBatch, proxyBufSize),
		tx:       newTxBatch(proxyBatch),
		txc:      newTxBatch(proxyBatch),
		events:   make([]unix.EpollEvent, 128),
		ctr:      ctr,
		done:     make(chan struct{}),
	}
	if w.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		w.closeFDs()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if w.wake, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		w.closeFDs()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for _, e := range []struct {
		fd  int
		tag int32
	}{{w.fd, tagVIP}, {w.wake, tagWake}} {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(e.fd), Pad: e.tag}
		if err := unix.EpollCtl(w.ep, unix.EPOLL_CTL_ADD, e.fd, &ev); err != nil {
			w.closeFDs()
			return nil, fmt.Errorf("epoll add: %w", err)
		}
	}
	return w, nil
}

func (w *proxyWorker) closeFDs() {
	for _, fd := range []int{w.fd, w.ep, w.wake} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// poke wakes the worker to look at its service's state (stop, reload).
func (w *proxyWorker) poke() {
	var one = [8]byte{1}
	_, _ = unix.Write(w.wake, one[:])
}

func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts)
	return ts.Nano()
}

// run is the worker's loop, until its service stops.
func (w *proxyWorker) run() {
	defer close(w.done)
	defer w.shutdown()
	w.now = monoNow()
	w.lastSweep = w.now
	for {
		n, err := unix.EpollWait(w.ep, w.events, int(proxySweepEvery/time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			w.p.log.Error("proxy worker stops", "service", w.svc.name, "err", err)
			return
		}
		w.now = monoNow()
		for i := 0; i < n; i++ {
			ev := &w.events[i]
			switch ev.Pad {
			case tagWake:
				var buf [8]byte
				_, _ = unix.Read(w.wake, buf[:])
				if w.svc.stopping.Load() {
					return
				}
				w.reconcile()
			case tagVIP:
				w.fromClients()
			default:
				s := w.slotSession(ev.Pad, ev.Fd)
				if s == nil {
					continue
				}
				if ev.Events&unix.EPOLLERR != 0 {
					if err := sockErr(s.fd); err != nil {
						w.sessionError(s, err)
						continue
					}
				}
				w.fromBackend(s)
			}
		}
		if w.now-w.lastSweep >= int64(proxySweepEvery) {
			w.sweep()
			w.lastSweep = w.now
		}
	}
}

func (w *proxyWorker) slotSession(slot int32, fd int32) *proxySession {
	if slot < 0 || int(slot) >= len(w.slots) {
		return nil
	}
	s := w.slots[slot]
	if s == nil || s.fd != int(fd) {
		return nil // closed earlier in this round
	}
	return s
}

// fromClients drains the VIP socket: each datagram is decided by the
// Router and sent on its session's upstream socket.
func (w *proxyWorker) fromClients() {
	for round := 0; round < 8; round++ {
		n, err := w.rx.recv(w.fd, true)
		if err != nil {
			w.p.log.Debug("receive on vip socket", "service", w.svc.name, "err", err)
			return
		}
		for i := 0; i < n; i++ {
			w.clientMessage(i)
		}
		w.flushBackend()
		if n < len(w.rx.hdrs) {
			return
		}
	}
}

// clientMessage routes message i of the receive batch, segment by
// segment when GRO coalesced it, and queues runs of segments that go to
// one session as one GSO send.
func (w *proxyWorker) clientMessage(i int) {
	h := &w.rx.hdrs[i]
	data := w.rx.bufs[i][:h.Len]
	if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
		w.ctr.add(ProxyFromClients, 1)
		w.ctr.add(ProxyDropOversized, 1)
		return
	}
	src := w.rx.addrPort(i)
	seg := w.rx.gsoSize(i)
	if seg <= 0 || seg >= len(data) {
		w.ctr.add(ProxyFromClients, 1)
		if s := w.decide(i, src, data); s != nil {
			w.queueBackend(s, data, 0, 1)
		}
		return
	}
	w.ctr.add(ProxyGROReceives, 1)
	var run *proxySession
	start, count := 0, 0
	for off := 0; off < len(data); off += seg {
		end := min(off+seg, len(data))
		w.ctr.add(ProxyFromClients, 1)
		s := w.decide(i, src, data[off:end])
		if s != run || count == gsoMaxSegments {
			if run != nil {
				w.queueBackend(run, data[start:off], seg, count)
			}
			run, start, count = s, off, 0
		}
		if s == nil {
			start = end
			continue
		}
		count++
	}
	if run != nil {
		w.queueBackend(run, data[start:], seg, count)
	}
}

// decide makes the routing decision for one datagram and returns its
// session, made if needed; nil drops the datagram (counted).
func (w *proxyWorker) decide(i int, src netip.AddrPort, payload []byte) *proxySession {
	backend, ok := proxyBackend(w.p.router, src, w.svc.vip, payload)
	if !ok {
		w.ctr.add(ProxyDropNoBackend, 1)
		return nil
	}
	key := sessionKey{addr: src.Addr().As16(), port: src.Port(), backend: backend}
	if s := w.lastHit; s != nil && s.key == key {
		s.last = w.now
		return s
	}
	s := w.sessions[key]
	if s == nil {
		s = w.open(key, &w.rx.names[i], w.rx.hdrs[i].Hdr.Namelen)
		if s == nil {
			return nil
		}
	}
	s.last = w.now
	w.lastHit = s
	return s
}

// open makes a session: an upstream socket connected to the backend,
// watched by the epoll loop. It returns nil (counted) when the table is
// full or the socket cannot be made.
func (w *proxyWorker) open(key sessionKey, client *unix.RawSockaddrInet6, clientLen uint32) *proxySession {
	t := w.p.targets.Load().byIndex[key.backend]
	if t == nil || t.service != w.svc.name {
		w.ctr.add(ProxyDropNoBackend, 1)
		return nil
	}
	if !w.p.reserveSession() {
		w.ctr.add(ProxyDropTableFull, 1)
		w.p.tableFull()
		return nil
	}
	fd, err := dialBackend(t.addr, w.gro)
	if err != nil {
		w.p.releaseSession()
		switch {
		case backendUnreachable(err):
			w.ctr.add(ProxyBackendUnreachable, 1)
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EADDRNOTAVAIL):
			// connect(2) of an unbound UDP socket: no free local port.
			w.ctr.add(ProxyDropNoLocalPort, 1)
		default:
			w.ctr.add(ProxyDropSendFailed, 1)
		}
		w.p.log.Debug("open session", "service", w.svc.name, "backend", t.name, "err", err)
		return nil
	}
	var slot int32
	if n := len(w.free); n > 0 {
		slot, w.free = w.free[n-1], w.free[:n-1]
	} else {
		slot = int32(len(w.slots))
		w.slots = append(w.slots, nil)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd), Pad: slot}
	if err := unix.EpollCtl(w.ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		unix.Close(fd)
		w.free = append(w.free, slot)
		w.p.releaseSession()
		w.ctr.add(ProxyDropSendFailed, 1)
		return nil
	}
	s := &proxySession{fd: fd, slot: slot, key: key, client: *client, clientLen: clientLen, target: t, last: w.now}
	w.slots[slot] = s
	w.sessions[key] = s
	t.ctr.sessions.Add(1)
	w.ctr.add(ProxySessionsCreated, 1)
	return s
}

// queueBackend queues count datagrams in data (segments of seg octets if
// count > 1) for s, sending what was queued for another session first.
func (w *proxyWorker) queueBackend(s *proxySession, data []byte, seg, count int) {
	if w.txTo != s {
		w.flushBackend()
		w.txTo = s
	}
	s.target.ctr.packets.Add(uint64(count))
	s.target.ctr.bytes.Add(uint64(len(data)))
	if count > 1 && w.gso {
		if w.tx.full() {
			w.flushBackend()
			w.txTo = s
		}
		w.tx.add(data, nil, 0, seg)
		return
	}
	if count <= 1 {
		seg = len(data)
	}
	for off := 0; off < len(data); off += seg {
		if w.tx.full() {
			w.flushBackend()
			w.txTo = s
		}
		w.tx.add(data[off:min(off+seg, len(data))], nil, 0, 0)
	}
}

// flushBackend sends what is queued for the current session.
func (w *proxyWorker) flushBackend() {
	s := w.txTo
	w.txTo = nil
	if s == nil || w.tx.n == 0 {
		return
	}
	queued, gso := w.tx.datagrams(w.tx.n), w.tx.gsoQueued()
	sent, err := w.tx.send(s.fd)
	ok := w.tx.datagrams(sent)
	w.ctr.add(ProxyToBackends, ok)
	w.ctr.add(ProxyGSOSends, gso)
	if err == nil {
		return
	}
	w.ctr.add(ProxyDropSendFailed, queued-ok)
	switch {
	case backendUnreachable(err):
		w.sessionError(s, err)
	case errors.Is(err, unix.EMSGSIZE):
		w.ctr.add(ProxyDropOversized, 1)
	case (errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL)) && gso > 0:
		// The route's device cannot segment (EIO: no checksum offload),
		// or the segments do not fit its MTU (EINVAL, udp(7)): send
		// datagrams one by one from now on.
		w.gso = false
		w.p.log.Info("udp gso unavailable toward a backend; sending datagrams one by one", "service", w.svc.name, "err", err)
	}
}

// fromBackend relays a backend's replies to the session's client from
// the VIP socket, so they come from the VIP's address and port.
func (w *proxyWorker) fromBackend(s *proxySession) {
	for round := 0; round < 8; round++ {
		n, err := w.rxUp.recv(s.fd, false)
		if err != nil {
			w.flushClients()
			if backendUnreachable(err) {
				w.sessionError(s, err)
			}
			return
		}
		if n > 0 {
			s.last = w.now
		}
		for i := 0; i < n; i++ {
			h := &w.rxUp.hdrs[i]
			data := w.rxUp.bufs[i][:h.Len]
			if len(data) == 0 {
				continue
			}
			seg := w.rxUp.gsoSize(i)
			if seg <= 0 || seg >= len(data) {
				seg = len(data)
			}
			count := (len(data) + seg - 1) / seg
			w.ctr.add(ProxyReplies, uint64(count))
			s.target.ctr.replies.Add(uint64(count))
			s.target.ctr.rbytes.Add(uint64(len(data)))
			if count > 1 {
				w.ctr.add(ProxyGROReceives, 1)
			}
			if count > 1 && w.gso {
				if w.txc.full() {
					w.flushClients()
				}
				w.txc.add(data, &s.client, s.clientLen, seg)
				continue
			}
			for off := 0; off < len(data); off += seg {
				if w.txc.full() {
					w.flushClients()
				}
				w.txc.add(data[off:min(off+seg, len(data))], &s.client, s.clientLen, 0)
			}
		}
		w.flushClients()
		if n < len(w.rxUp.hdrs) {
			return
		}
	}
}

func (w *proxyWorker) flushClients() {
	if w.txc.n == 0 {
		return
	}
	queued, gso := w.txc.datagrams(w.txc.n), w.txc.gsoQueued()
	sent, err := w.txc.send(w.fd)
	ok := w.txc.datagrams(sent)
	w.ctr.add(ProxyGSOSends, gso)
	if err == nil {
		return
	}
	w.ctr.add(ProxyDropSendFailed, queued-ok)
	if (errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL)) && gso > 0 {
		w.gso = false
		w.p.log.Info("udp gso unavailable toward clients; sending datagrams one by one", "service", w.svc.name, "err", err)
	}
}

// sessionError closes s after an ICMP error of its backend (counted).
func (w *proxyWorker) sessionError(s *proxySession, err error) {
	if backendUnreachable(err) {
		w.ctr.add(ProxyBackendUnreachable, 1)
	}
	w.p.log.Debug("session closed", "service", w.svc.name, "backend", s.target.name, "err", err)
	w.close(s, ProxySessionsClosed)
}

func (w *proxyWorker) close(s *proxySession, why ProxyEvent) {
	if w.txTo == s {
		w.tx.n = 0
		w.txTo = nil
	}
	if w.lastHit == s {
		w.lastHit = nil
	}
	unix.Close(s.fd) // leaves the epoll set with its last reference
	w.slots[s.slot] = nil
	w.free = append(w.free, s.slot)
	delete(w.sessions, s.key)
	s.target.ctr.sessions.Add(-1)
	w.p.releaseSession()
	w.ctr.add(why, 1)
}

// sweep closes sessions idle for longer than the service's flow_timeout.
func (w *proxyWorker) sweep() {
	timeout := w.svc.timeout.Load()
	for _, s := range w.slots {
		if s != nil && w.now-s.last > timeout {
			src := netip.AddrPortFrom(netip.AddrFrom16(s.key.addr).Unmap(), s.key.port)
			w.p.router.expireFlow(w.svc.vip, src, s.key.backend)
			w.close(s, ProxySessionsExpired)
		}
	}
}

// reconcile closes the sessions whose backend a reload removed or changed
// (a new address or port is a new target).
func (w *proxyWorker) reconcile() {
	targets := w.p.targets.Load()
	for _, s := range w.slots {
		if s != nil && targets.byIndex[s.key.backend] != s.target {
			w.close(s, ProxySessionsClosed)
		}
	}
	w.sweep()
}

// shutdown closes every session and the worker's sockets.
func (w *proxyWorker) shutdown() {
	for _, s := range w.slots {
		if s != nil {
			w.close(s, ProxySessionsClosed)
		}
	}
	w.closeFDs()
}
