package netns

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// maxCapturedFrames bounds a capture's memory; frames past it are counted in
// Capture.Dropped instead of kept.
const maxCapturedFrames = 200_000

// Frame is one Ethernet frame seen by a [Capture].
type Frame struct {
	// Data is the frame from the Ethernet header on. Frames the host sent
	// in one GSO batch may show as one frame with a large UDP payload
	// holding several packets; the first is intact.
	Data []byte
	// Outgoing is true for frames the host sent, false for frames it
	// received.
	Outgoing bool
	Time     time.Time
}

// Capture records the frames of a host's veth through an AF_PACKET socket
// opened in the host's namespace, as tcpdump would, in both directions.
type Capture struct {
	f       *os.File
	done    chan struct{}
	stopped atomic.Bool

	mu      sync.Mutex
	frames  []Frame
	dropped int
	err     error
}

// Capture starts recording every frame sent or received on the host's eth0.
// Stop it with [Capture.Stop]; the lab stops it at teardown if the test did
// not.
func (h *Host) Capture() (*Capture, error) {
	var fd int
	err := h.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: h.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket to %s: %w", h.Iface, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("capture on %s in %s: %w", h.Iface, h.NS, err)
	}
	c := &Capture{f: os.NewFile(uintptr(fd), "capture-"+h.NS), done: make(chan struct{})}
	go c.loop()
	h.lab.mu.Lock()
	h.lab.holderFns = append(h.lab.holderFns, func() { c.Stop() })
	h.lab.mu.Unlock()
	return c, nil
}

func (c *Capture) loop() {
	defer close(c.done)
	rc, err := c.f.SyscallConn()
	if err != nil {
		c.setErr(err)
		return
	}
	buf := make([]byte, 65536+64)
	for {
		var n int
		var from unix.Sockaddr
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			return rerr != unix.EAGAIN
		})
		if err != nil {
			if !c.stopped.Load() {
				c.setErr(err)
				return
			}
			// Stopped (the read deadline passed): take what is queued.
			// A frame a socket of the host has received was queued here
			// first (packet taps run before protocol delivery), so
			// nothing the test has seen is missed.
			_ = rc.Control(func(fd uintptr) {
				for {
					n, from, rerr := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
					if rerr != nil {
						return
					}
					c.keep(buf[:n], from)
				}
			})
			return
		}
		if rerr != nil {
			c.setErr(rerr)
			return
		}
		c.keep(buf[:n], from)
	}
}

func (c *Capture) keep(frame []byte, from unix.Sockaddr) {
	out := false
	if ll, ok := from.(*unix.SockaddrLinklayer); ok {
		out = ll.Pkttype == unix.PACKET_OUTGOING
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.frames) < maxCapturedFrames {
		c.frames = append(c.frames, Frame{Data: append([]byte(nil), frame...), Outgoing: out, Time: time.Now()})
	} else {
		c.dropped++
	}
}

func (c *Capture) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// Frames returns the frames recorded so far.
func (c *Capture) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// Stop ends the capture and returns every frame it recorded, and the error
// that ended it early, if any. Calling it again returns the same frames.
func (c *Capture) Stop() ([]Frame, error) {
	if !c.stopped.Swap(true) {
		// Wake the reader; it drains the queue and returns.
		_ = c.f.SetReadDeadline(time.Now())
		<-c.done
		_ = c.f.Close()
	}
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.err
	if c.dropped > 0 && err == nil {
		err = fmt.Errorf("capture kept %d frames and dropped %d", len(c.frames), c.dropped)
	}
	return append([]Frame(nil), c.frames...), err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// UDPDatagram is the UDP part of a frame.
type UDPDatagram struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// ParseUDP decodes an Ethernet frame carrying IPv4 or IPv6 (no extension
// headers, no fragments) and UDP, as the lab's hosts send them. ok is false
// for anything else.
func ParseUDP(frame []byte) (d UDPDatagram, ok bool) {
	if len(frame) < 14 {
		return d, false
	}
	etherType := binary.BigEndian.Uint16(frame[12:14])
	ip := frame[14:]
	var src, dst netip.Addr
	var l4 []byte
	switch etherType {
	case unix.ETH_P_IP:
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return d, false
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if ip[9] != unix.IPPROTO_UDP || ihl < 20 || len(ip) < ihl || binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 {
			return d, false
		}
		if total >= ihl && total <= len(ip) {
			ip = ip[:total]
		}
		src = netip.AddrFrom4([4]byte(ip[12:16]))
		dst = netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[ihl:]
	case unix.ETH_P_IPV6:
		if len(ip) < 40 || ip[0]>>4 != 6 || ip[6] != unix.IPPROTO_UDP {
			return d, false
		}
		if plen := int(binary.BigEndian.Uint16(ip[4:6])); plen != 0 && 40+plen <= len(ip) {
			ip = ip[:40+plen]
		}
		src = netip.AddrFrom16([16]byte(ip[8:24]))
		dst = netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[40:]
	default:
		return d, false
	}
	if len(l4) < 8 {
		return d, false
	}
	d.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:2]))
	d.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:4]))
	d.Payload = l4[8:]
	return d, true
}
