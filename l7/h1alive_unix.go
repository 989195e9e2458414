//go:build unix

package l7

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// alive reports that the upstream has neither closed an idle connection
// nor sent on it, with a non-blocking peek: net/http's Transport learns of
// a close from the read it keeps pending on every idle connection (a
// goroutine each); this asks only when the connection is about to be
// reused after a while. A request with a body cannot be sent again once
// it went out on a connection that turned out closed, so it matters.
func (pc *h1Conn) alive() bool {
	if pc.br.Buffered() > 0 {
		return false // bytes nobody asked for
	}
	sc, ok := pc.c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, rerr := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		// EAGAIN: nothing to read, still open. A 0-byte read (EOF), data
		// or an error (a reset) all mean the connection is done.
		alive = rerr == unix.EAGAIN
		return true
	})
	return err == nil && alive
}
