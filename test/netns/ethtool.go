package netns

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolValue is struct ethtool_value from <linux/ethtool.h>.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with its union holding a pointer (ifr_data).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtool runs one SIOCETHTOOL get/set of a struct ethtool_value on iface,
// from a socket opened inside the current thread's network namespace.
func ethtool(iface string, cmd, data uint32) (uint32, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("ethtool socket: %w", err)
	}
	defer unix.Close(fd)
	v := &ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], iface)
	ifr.data = unsafe.Pointer(v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(v)
	if errno != 0 {
		return 0, fmt.Errorf("ethtool cmd %#x on %s: %w", cmd, iface, errno)
	}
	return v.data, nil
}

// SetTxChecksum turns TX checksum offload of the host's veth on or off, like
// `ethtool -K eth0 tx off` but through the SIOCETHTOOL ioctl
// (ETHTOOL_STXCSUM), so tests need no ethtool binary. Off matters for hosts
// whose packets cross native XDP: XDP loses the skb's CHECKSUM_PARTIAL state,
// so a UDP checksum left for the "hardware" to finish arrives unfinished and
// the receiver drops it (UdpInCsumErrors).
func (h *Host) SetTxChecksum(on bool) error {
	var v uint32
	if on {
		v = 1
	}
	return h.Do(func() error {
		if _, err := ethtool(h.Iface, unix.ETHTOOL_STXCSUM, v); err != nil {
			return fmt.Errorf("set tx checksum offload of %s in %s: %w", h.Iface, h.NS, err)
		}
		return nil
	})
}

// TxChecksum reports whether TX checksum offload is on for the host's veth.
func (h *Host) TxChecksum() (bool, error) {
	var on bool
	err := h.Do(func() error {
		v, err := ethtool(h.Iface, unix.ETHTOOL_GTXCSUM, 0)
		if err != nil {
			return fmt.Errorf("get tx checksum offload of %s in %s: %w", h.Iface, h.NS, err)
		}
		on = v != 0
		return nil
	})
	return on, err
}

// SetGRO turns generic receive offload of the host's veth on or off, as
// `ethtool -K eth0 gro on` does (ETHTOOL_SGRO). On a veth without an XDP
// program, GRO on is what makes it receive through NAPI, where the kernel
// coalesces UDP datagrams for sockets that ask for it (UDP_GRO), as a
// physical NIC's driver does.
func (h *Host) SetGRO(on bool) error {
	var v uint32
	if on {
		v = 1
	}
	return h.Do(func() error {
		if _, err := ethtool(h.Iface, unix.ETHTOOL_SGRO, v); err != nil {
			return fmt.Errorf("set gro of %s in %s: %w", h.Iface, h.NS, err)
		}
		return nil
	})
}
