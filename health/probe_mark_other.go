//go:build !linux

package health

import (
	"fmt"
	"syscall"
)

// markControl fails for any mark: SO_MARK exists only on Linux.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(string, string, syscall.RawConn) error {
		return &localError{fmt.Errorf("set socket mark %#x: SO_MARK needs Linux", mark)}
	}
}
