//go:build !linux

package admin

import "net"

// peerOf names who is on the other end of c for the audit log.
func peerOf(c net.Conn) string { return c.RemoteAddr().String() }
