package forwarder

import (
	"errors"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The proxy's socket layer: non-blocking UDP sockets driven by one epoll
// per worker, batched with recvmmsg/sendmmsg (recvmmsg(2), sendmmsg(2)),
// with UDP GRO on receive and UDP GSO on send where the kernel allows
// (udp(7): UDP_GRO since 5.0, UDP_SEGMENT since 4.18). Raw syscalls keep
// the hot path free of allocations: every buffer, header and address is
// allocated once per worker.

// proxyBufSize is the size of one receive buffer: a GRO receive coalesces
// up to 64 segments into at most one IP datagram's worth (64 KiB), and a
// shorter buffer would truncate it (udp(7), UDP_GRO).
const proxyBufSize = 1 << 16

// gsoMaxSegments is the most segments one UDP_SEGMENT send may carry
// (UDP_MAX_SEGMENTS in include/linux/udp.h).
const gsoMaxSegments = 64

// cmsgSpace is room for one cmsg carrying an int (UDP_GRO) or a uint16
// (UDP_SEGMENT).
var cmsgSpace = unix.CmsgSpace(4)

// mmsgBatch is a set of message headers with their iovecs, addresses and
// control buffers, reused for every recvmmsg or sendmmsg of a worker.
type mmsgBatch struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6
	ctrl  []byte // cmsgSpace per message
}

func newMmsgBatch(n int) *mmsgBatch {
	b := &mmsgBatch{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		ctrl:  make([]byte, n*cmsgSpace),
	}
	for i := range b.hdrs {
		h := &b.hdrs[i].Hdr
		h.Iov = &b.iovs[i]
		h.Iovlen = 1
	}
	return b
}

// rxBatch is a receive batch with its buffers.
type rxBatch struct {
	*mmsgBatch
	bufs [][]byte
}

func newRxBatch(n, size int) *rxBatch {
	b := &rxBatch{mmsgBatch: newMmsgBatch(n), bufs: make([][]byte, n)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, size)
	}
	return b
}

// recv fills up to len(bufs) messages from fd without blocking; with name,
// each message's source address is kept. It returns how many arrived (0
// when none is waiting).
func (b *rxBatch) recv(fd int, name bool) (int, error) {
	for i := range b.hdrs {
		h := &b.hdrs[i].Hdr
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(len(b.bufs[i]))
		if name {
			h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
			h.Namelen = unix.SizeofSockaddrInet6
		} else {
			h.Name, h.Namelen = nil, 0
		}
		h.Control = &b.ctrl[i*cmsgSpace]
		h.SetControllen(cmsgSpace)
		h.Flags = 0
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd),
			uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		default:
			return 0, errno
		}
	}
}

// gsoSize returns the segment size of message i if the kernel coalesced
// it (UDP_GRO cmsg), else 0.
func (b *rxBatch) gsoSize(i int) int {
	h := &b.hdrs[i].Hdr
	if h.Controllen < unix.SizeofCmsghdr {
		return 0
	}
	c := (*unix.Cmsghdr)(unsafe.Pointer(h.Control))
	if c.Level != unix.SOL_UDP || c.Type != unix.UDP_GRO || c.Len < uint64(unix.CmsgLen(2)) {
		return 0
	}
	data := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(h.Control), unix.CmsgLen(0))), 4)
	// The kernel writes an int (udp_cmsg_recv: put_cmsg of sizeof(int)).
	return int(*(*int32)(unsafe.Pointer(&data[0])))
}

// addrPort returns message i's source address. IPv4-mapped addresses
// are unmapped.
func (b *rxBatch) addrPort(i int) netip.AddrPort {
	return sockaddrToAddrPort(&b.names[i])
}

func sockaddrToAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), ntohs(s4.Port))
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// ntohs reads a port as sockaddr holds it (network order), on the
// little-endian hosts spooky runs on (as htons in route.go).
func ntohs(p uint16) uint16 { return htons(p) }

// txBatch is a send batch: each entry one datagram, or several of equal
// size sent as one with UDP_SEGMENT.
type txBatch struct {
	*mmsgBatch
	n     int
	count []int // datagrams in each entry
}

func newTxBatch(n int) *txBatch {
	return &txBatch{mmsgBatch: newMmsgBatch(n), count: make([]int, n)}
}

// datagrams returns how many datagrams the first n entries carry.
func (b *txBatch) datagrams(n int) uint64 {
	var c uint64
	for _, v := range b.count[:n] {
		c += uint64(v)
	}
	return c
}

// gsoQueued returns how many queued entries are GSO sends.
func (b *txBatch) gsoQueued() uint64 {
	var c uint64
	for _, v := range b.count[:b.n] {
		if v > 1 {
			c++
		}
	}
	return c
}

func (b *txBatch) full() bool { return b.n == len(b.hdrs) }

// add queues data; a non-nil to is copied as the destination; seg > 0
// sends data as segments of seg octets (GSO).
func (b *txBatch) add(data []byte, to *unix.RawSockaddrInet6, toLen uint32, seg int) {
	i := b.n
	b.n++
	h := &b.hdrs[i].Hdr
	b.iovs[i].Base = &data[0]
	b.iovs[i].SetLen(len(data))
	if to != nil {
		b.names[i] = *to
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Namelen = toLen
	} else {
		h.Name, h.Namelen = nil, 0
	}
	b.count[i] = 1
	if seg > 0 && seg < len(data) {
		b.count[i] = (len(data) + seg - 1) / seg
		c := b.ctrl[i*cmsgSpace : (i+1)*cmsgSpace]
		clear(c)
		hdr := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		hdr.Level = unix.SOL_UDP
		hdr.Type = unix.UDP_SEGMENT
		hdr.SetLen(unix.CmsgLen(2))
		*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(seg)
		h.Control = &c[0]
		h.SetControllen(cmsgSpace)
	} else {
		h.Control = nil
		h.SetControllen(0)
	}
}

// send writes the queued messages to fd. It returns how many were sent
// before an error stopped it (EAGAIN: the socket buffer is full, and the
// rest are dropped as a kernel queue overflow would drop them).
func (b *txBatch) send(fd int) (int, error) {
	sent := 0
	for sent < b.n {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd),
			uintptr(unsafe.Pointer(&b.hdrs[sent])), uintptr(b.n-sent), unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			b.n = 0
			return sent, errno
		}
		sent += int(n)
	}
	b.n = 0
	return sent, nil
}

// udpSocket opens a non-blocking UDP socket of addr's family.
func udpSocket(addr netip.Addr) (int, error) {
	family := unix.AF_INET6
	if addr.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, fmt.Errorf("udp socket: %w", err)
	}
	return fd, nil
}

// sockaddr returns ap as a raw socket address of its family and its length.
func sockaddr(ap netip.AddrPort) (unix.RawSockaddrInet6, uint32) {
	var sa unix.RawSockaddrInet6
	a := ap.Addr().Unmap()
	if a.Is4() {
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		s4.Family = unix.AF_INET
		s4.Port = htons(ap.Port())
		s4.Addr = a.As4()
		return sa, unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	sa.Port = htons(ap.Port())
	sa.Addr = a.As16()
	return sa, unix.SizeofSockaddrInet6
}

func toSockaddr(ap netip.AddrPort) unix.Sockaddr {
	a := ap.Addr().Unmap()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}

// listenVIP opens one of the VIP's SO_REUSEPORT sockets. The address may
// be one the host accepts only through a local route (proxy_vip.go), which
// bind(2) refuses for IPv6 (no interface holds it) and for IPv4 before the
// route exists; IP_FREEBIND lifts that (ip(7), ipv6(7)).
func listenVIP(vip netip.AddrPort) (fd int, gro bool, err error) {
	fd, err = udpSocket(vip.Addr())
	if err != nil {
		return -1, false, err
	}
	fail := func(what string, err error) (int, bool, error) {
		unix.Close(fd)
		return -1, false, fmt.Errorf("vip %s: %s: %w", vip, what, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail("SO_REUSEPORT", err)
	}
	if vip.Addr().Is4() {
		err = unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_FREEBIND, 1)
	} else {
		if err = unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_V6ONLY, 1); err == nil {
			err = unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
		}
	}
	if err != nil {
		return fail("freebind", err)
	}
	setBuffers(fd)
	gro = unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO, 1) == nil
	if err := unix.Bind(fd, toSockaddr(vip)); err != nil {
		return fail("bind", err)
	}
	return fd, gro, nil
}

// proxySockBuf is the VIP sockets' buffer size: bursts of a few
// milliseconds at line rate fit.
const proxySockBuf = 4 << 20

// setBuffers sizes a VIP socket's buffers: past net.core.rmem_max if the
// daemon may (SO_RCVBUFFORCE needs CAP_NET_ADMIN, socket(7)), else up to it.
func setBuffers(fd int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, proxySockBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, proxySockBuf)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, proxySockBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, proxySockBuf)
	}
}

// dialBackend opens a session's upstream socket, connected to backend so
// that the kernel filters replies to it and reports its ICMP errors on the
// socket (udp(7): ECONNREFUSED).
func dialBackend(backend netip.AddrPort, gro bool) (int, error) {
	fd, err := udpSocket(backend.Addr())
	if err != nil {
		return -1, err
	}
	if gro {
		_ = unix.SetsockoptInt(fd, unix.SOL_UDP, unix.UDP_GRO, 1)
	}
	if err := unix.Connect(fd, toSockaddr(backend)); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect to backend %s: %w", backend, err)
	}
	return fd, nil
}

// sockErr reads and clears a socket's pending error (SO_ERROR), which is
// how a connected UDP socket reports an ICMP error the epoll loop saw as
// EPOLLERR.
func sockErr(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v == 0 {
		return nil
	}
	return unix.Errno(v)
}

// backendUnreachable reports whether err is an ICMP error of the backend
// or its path (udp(7): errors a connected socket receives).
func backendUnreachable(err error) bool {
	return errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.EHOSTUNREACH) ||
		errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTDOWN)
}
