package admin

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerOf names who is on the other end of c for the audit log: the uid
// and pid of a unix socket peer (SO_PEERCRED, unix(7)), or the remote
// address of a TCP one.
func peerOf(c net.Conn) string {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return c.RemoteAddr().String()
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return "unix"
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || credErr != nil {
		return "unix"
	}
	return fmt.Sprintf("uid %d pid %d", cred.Uid, cred.Pid)
}
