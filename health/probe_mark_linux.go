package health

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// markControl returns a net.Dialer or net.ListenConfig Control func that
// sets SO_MARK to mark on the socket before it connects or binds, or nil
// for mark 0. The mark is what steers a probe of the VIP to one backend
// (socket(7): SO_MARK tags the socket's packets for routing and
// filtering).
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			// The kernel reads an int; a mark above 1<<31 keeps its bits.
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(int32(mark)))
		}); err != nil {
			return &localError{fmt.Errorf("set socket mark %#x: %w", mark, err)}
		}
		if serr != nil {
			if errors.Is(serr, unix.EPERM) {
				return &localError{fmt.Errorf("set socket mark %#x: %w (needs CAP_NET_ADMIN or CAP_NET_RAW)", mark, serr)}
			}
			return &localError{fmt.Errorf("set socket mark %#x: %w", mark, serr)}
		}
		return nil
	}
}
