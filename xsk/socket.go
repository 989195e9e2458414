package xsk

import (
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Mode selects how the kernel moves frames between the driver and the
// UMEM (af_xdp.rst "XDP_COPY and XDP_ZEROCOPY bind flags").
type Mode uint8

// Bind modes.
const (
	// ModeAuto lets the kernel use zero copy where the driver supports it
	// and copy elsewhere.
	ModeAuto Mode = iota
	// ModeCopy copies every frame: works on every driver (veth has no
	// zero-copy support) and with XDP programs attached in generic mode.
	ModeCopy
	// ModeZeroCopy fails to bind unless the driver supports it.
	ModeZeroCopy
)

// Defaults of Options.
const (
	DefaultFrames    = 4096
	DefaultFrameSize = 4096
	DefaultRingSize  = 2048
)

// Options configure a Socket. The zero value is usable.
type Options struct {
	// Frames is the number of UMEM frames. If zero, DefaultFrames.
	Frames int
	// FrameSize is the size of one frame: a power of two from 2048 to the
	// page size (aligned chunk mode). A frame holds XDP_PACKET_HEADROOM
	// (256) octets before the packet, where Grow makes room for headers.
	// If zero, DefaultFrameSize.
	FrameSize int
	// RingSize is the number of entries of each ring, a power of two. If
	// zero, DefaultRingSize. The fill ring starts with
	// min(RingSize, Frames/2) frames; the rest are for Alloc.
	RingSize int
	// Mode is the bind mode. If zero, ModeAuto.
	Mode Mode
}

// Desc is an RX or TX ring entry (struct xdp_desc): a packet at Addr, an
// offset into the UMEM, of Len octets.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// Errors Open returns that a caller may branch on.
var (
	// ErrUnsupported: the kernel has no AF_XDP, or the driver cannot bind
	// in the mode asked for.
	ErrUnsupported = errors.New("af_xdp not supported")
)

// Socket is an AF_XDP socket bound to one queue of one interface, with a
// UMEM of its own.
type Socket struct {
	fd        int
	ifindex   int
	queue     int
	umem      []byte
	frameSize uint64
	fill      ring
	comp      ring
	rx        ring
	tx        ring
	// free holds frames neither in the kernel's hands nor the caller's:
	// those the fill ring had no room for, and those Alloc hands out.
	free []uint64
	// txQueued counts descriptors put on the TX ring since the last
	// wakeup; copy mode transmits only inside sendto.
	txQueued int
}

// Open creates a socket bound to queue of the interface with index
// ifindex. It must run in the interface's network namespace.
func Open(ifindex, queue int, opts *Options) (*Socket, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Frames == 0 {
		o.Frames = DefaultFrames
	}
	if o.FrameSize == 0 {
		o.FrameSize = DefaultFrameSize
	}
	if o.RingSize == 0 {
		o.RingSize = DefaultRingSize
	}
	switch {
	case o.FrameSize < 2048 || o.FrameSize > os.Getpagesize() || o.FrameSize&(o.FrameSize-1) != 0:
		return nil, fmt.Errorf("xsk: frame size %d: want a power of two from 2048 to %d", o.FrameSize, os.Getpagesize())
	case o.RingSize < 2 || o.RingSize&(o.RingSize-1) != 0:
		return nil, fmt.Errorf("xsk: ring size %d: want a power of two", o.RingSize)
	case o.Frames < 2:
		return nil, fmt.Errorf("xsk: %d frames: want at least 2", o.Frames)
	case ifindex <= 0 || queue < 0:
		return nil, fmt.Errorf("xsk: interface index %d queue %d: out of range", ifindex, queue)
	}

	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) {
			return nil, fmt.Errorf("xsk: socket: %w: %w", ErrUnsupported, err)
		}
		return nil, fmt.Errorf("xsk: socket: %w", err)
	}
	s := &Socket{fd: fd, ifindex: ifindex, queue: queue, frameSize: uint64(o.FrameSize)}
	if err := s.setup(o); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Socket) setup(o Options) error {
	var err error
	s.umem, err = unix.Mmap(-1, 0, o.Frames*o.FrameSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("xsk: map umem of %d frames: %w", o.Frames, err)
	}
	reg := unix.XDPUmemReg{
		Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(s.umem)))),
		Len:  uint64(len(s.umem)),
		Size: uint32(o.FrameSize),
	}
	if err := setsockopt(s.fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return fmt.Errorf("xsk: register umem: %w", err)
	}
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING, unix.XDP_TX_RING} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, opt, o.RingSize); err != nil {
			return fmt.Errorf("xsk: size ring %d: %w", opt, err)
		}
	}
	var off unix.XDPMmapOffsets
	if err := getsockopt(s.fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return fmt.Errorf("xsk: read ring offsets: %w", err)
	}
	size := uint32(o.RingSize)
	if s.fill, err = mapRing(s.fd, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, size, 8); err != nil {
		return fmt.Errorf("xsk: map fill ring: %w", err)
	}
	if s.comp, err = mapRing(s.fd, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, size, 8); err != nil {
		return fmt.Errorf("xsk: map completion ring: %w", err)
	}
	if s.rx, err = mapRing(s.fd, unix.XDP_PGOFF_RX_RING, off.Rx, size, unsafe.Sizeof(Desc{})); err != nil {
		return fmt.Errorf("xsk: map rx ring: %w", err)
	}
	if s.tx, err = mapRing(s.fd, unix.XDP_PGOFF_TX_RING, off.Tx, size, unsafe.Sizeof(Desc{})); err != nil {
		return fmt.Errorf("xsk: map tx ring: %w", err)
	}

	// The kernel takes frames from the fill ring as packets arrive, so it
	// is filled before the bind.
	s.free = make([]uint64, 0, o.Frames)
	toFill := min(o.RingSize, o.Frames/2)
	for i := range o.Frames {
		addr := uint64(i) * s.frameSize
		if i < toFill {
			*s.fill.addr(s.fill.prod) = addr
			s.fill.prod++
		} else {
			s.free = append(s.free, addr)
		}
	}
	s.fill.publish()

	var flags uint16
	switch o.Mode {
	case ModeCopy:
		flags = unix.XDP_COPY
	case ModeZeroCopy:
		flags = unix.XDP_ZEROCOPY
	}
	sa := &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(s.ifindex), QueueID: uint32(s.queue)}
	if err := unix.Bind(s.fd, sa); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPROTONOSUPPORT) {
			err = fmt.Errorf("%w: %w", ErrUnsupported, err)
		}
		return fmt.Errorf("xsk: bind to interface %d queue %d: %w", s.ifindex, s.queue, err)
	}
	return nil
}

func setsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), n, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockopt(fd, opt int, p unsafe.Pointer, n uintptr) error {
	l := uint32(n)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// FD returns the socket's file descriptor, the value of its XSKMAP entry.
func (s *Socket) FD() int { return s.fd }

// Queue returns the queue the socket is bound to, its XSKMAP key.
func (s *Socket) Queue() int { return s.queue }

// Register puts the socket into m, an XSKMAP, under its queue, so that an
// XDP program's bpf_redirect_map(&m, ctx->rx_queue_index, …) reaches it.
func (s *Socket) Register(m *ebpf.Map) error {
	if err := m.Put(uint32(s.queue), uint32(s.fd)); err != nil {
		return fmt.Errorf("xsk: register queue %d in %v: %w", s.queue, m, err)
	}
	return nil
}

// Unregister removes the socket's queue from m, if the entry is still its.
func (s *Socket) Unregister(m *ebpf.Map) error {
	if err := m.Delete(uint32(s.queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("xsk: unregister queue %d from %v: %w", s.queue, m, err)
	}
	return nil
}

// Wait blocks until the RX ring has frames or timeout passes; it returns
// whether there are frames. A negative timeout waits for ever.
func (s *Socket) Wait(timeout time.Duration) (bool, error) {
	if s.rx.ready() > 0 {
		return true, nil
	}
	ms := -1
	if timeout >= 0 {
		ms = int(timeout.Milliseconds())
	}
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("xsk: poll: %w", err)
		}
		return n > 0 && s.rx.ready() > 0, nil
	}
}

// Receive moves up to len(out) received frames from the RX ring into out
// and returns how many. Each frame is the caller's until it passes it to
// Send or Release.
func (s *Socket) Receive(out []Desc) int {
	n := min(s.rx.ready(), uint32(len(out)))
	for i := range n {
		out[i] = *s.rx.desc(s.rx.cons)
		s.rx.cons++
	}
	if n > 0 {
		s.rx.release()
	}
	return int(n)
}

// Frame returns the packet d describes, in the UMEM: valid until d is
// passed to Send or Release. ok is false when d lies outside the UMEM.
func (s *Socket) Frame(d Desc) ([]byte, bool) {
	end := d.Addr + uint64(d.Len)
	if end > uint64(len(s.umem)) || end < d.Addr {
		return nil, false
	}
	return s.umem[d.Addr:end:end], true
}

// Headroom returns how many octets of its frame lie before d's packet.
func (s *Socket) Headroom(d Desc) int { return int(d.Addr & (s.frameSize - 1)) }

// Resize returns d moved to start front octets earlier (front < 0: later)
// and to be length octets long, within its frame: the way to prepend a
// header or cut a packet. ok is false if that leaves the frame.
func (s *Socket) Resize(d Desc, front, length int) (Desc, bool) {
	head := s.Headroom(d)
	if front > head || head-front < 0 || length < 0 || uint64(head-front+length) > s.frameSize {
		return d, false
	}
	d.Addr = d.Addr - uint64(head) + uint64(head-front)
	d.Len = uint32(length)
	return d, true
}

// Send queues d for transmission on the socket's queue. The frame returns
// to the fill ring when the kernel completes it. false means the TX ring
// is full: Flush and try again, or Release d.
func (s *Socket) Send(d Desc) bool {
	if s.tx.free() == 0 {
		return false
	}
	*s.tx.desc(s.tx.prod) = d
	s.tx.prod++
	s.txQueued++
	return true
}

// Release gives d's frame back for receiving.
func (s *Socket) Release(d Desc) { s.recycle(d.Addr &^ (s.frameSize - 1)) }

func (s *Socket) recycle(chunk uint64) {
	if s.fill.free() > 0 {
		*s.fill.addr(s.fill.prod) = chunk
		s.fill.prod++
		return
	}
	s.free = append(s.free, chunk)
}

// Alloc returns a free frame to build a packet in for Send, its length the
// frame's size less XDP_PACKET_HEADROOM; ok is false when none is free.
func (s *Socket) Alloc() (Desc, bool) {
	if len(s.free) == 0 {
		s.reap()
		if len(s.free) == 0 {
			return Desc{}, false
		}
	}
	chunk := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	return Desc{Addr: chunk + unix.XDP_PACKET_HEADROOM, Len: uint32(s.frameSize - unix.XDP_PACKET_HEADROOM)}, true
}

// Flush hands what Send and Release queued to the kernel: the TX ring is
// published and the kernel woken to transmit it (in copy mode frames
// leave only inside sendto), completed frames go back to the fill ring.
func (s *Socket) Flush() error {
	s.tx.publish()
	var err error
	if s.txQueued > 0 {
		err = s.kick()
	}
	s.reap()
	// Move frames that waited for room in the fill ring.
	for len(s.free) > 0 && s.fill.free() > 0 {
		s.recycle(s.free[len(s.free)-1])
		s.free = s.free[:len(s.free)-1]
	}
	s.fill.publish()
	return err
}

// kick wakes the kernel to transmit. In copy mode one sendto sends at most
// a budget of descriptors (32 by default) and says EAGAIN while more wait.
func (s *Socket) kick() error {
	for range int(s.tx.size)/8 + 1 {
		err := unix.Sendto(s.fd, nil, unix.MSG_DONTWAIT, nil)
		switch {
		case err == nil:
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOBUFS):
			// More to send, or the driver is busy: try once more, and
			// leave the rest to the next Flush.
		default:
			return fmt.Errorf("xsk: wake tx: %w", err)
		}
		if atomic32(s.tx.consumer) == s.tx.prod {
			s.txQueued = 0
			return nil
		}
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			return nil
		}
	}
	return nil
}

// reap moves completed TX frames back to the fill ring.
func (s *Socket) reap() {
	n := s.comp.ready()
	for range n {
		s.recycle(*s.comp.addr(s.comp.cons) &^ (s.frameSize - 1))
		s.comp.cons++
	}
	if n > 0 {
		s.comp.release()
	}
}

// Stats returns the kernel's counters of the socket (XDP_STATISTICS):
// frames dropped for want of fill ring entries or RX ring room, and
// invalid descriptors.
func (s *Socket) Stats() (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	if err := getsockopt(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st)); err != nil {
		return st, fmt.Errorf("xsk: statistics: %w", err)
	}
	return st, nil
}

// Close unmaps the rings and the UMEM and closes the socket; the kernel
// removes it from every XSKMAP.
func (s *Socket) Close() error {
	for _, r := range []*ring{&s.fill, &s.comp, &s.rx, &s.tx} {
		r.unmap()
	}
	var err error
	if s.fd >= 0 {
		err = unix.Close(s.fd)
		s.fd = -1
	}
	if s.umem != nil {
		_ = unix.Munmap(s.umem)
		s.umem = nil
	}
	return err
}
