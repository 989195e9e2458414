package admin

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// maxSocketPath is the longest path a unix socket address holds: sun_path
// is 108 bytes with the terminating NUL (unix(7)).
const maxSocketPath = 107

// liveProbeTimeout bounds the connect that tells a live socket from a
// stale one. A live daemon accepts at once (the kernel completes a unix
// connect before accept), so this only matters for a wedged one.
const liveProbeTimeout = 2 * time.Second

// ErrNotLoopback is a TCP listen address that is not a loopback IP literal.
// The admin API has no authentication, so it listens on nothing else.
var ErrNotLoopback = errors.New("not a loopback address")

// listenUnix creates the admin socket at path, mode 0600 and owned by the
// daemon's user, before any client can reach it.
//
// bind(2) creates the socket with mode 0777 &^ umask, and the umask is
// process-wide (changing it races every other goroutine creating files). So
// the socket is bound in a fresh private directory (0700), set to 0600 and
// its owner there, and only then linked to path. link(2) fails if path
// exists, so two daemons starting at once cannot both take it; an existing
// path is replaced only if it is a socket that nobody answers on.
func listenUnix(path string) (*net.UnixListener, os.FileInfo, error) {
	if !filepath.IsAbs(path) {
		return nil, nil, fmt.Errorf("admin socket %q: not an absolute path", path)
	}
	if len(path) > maxSocketPath {
		return nil, nil, fmt.Errorf("admin socket %s: longer than %d bytes, the limit of a unix socket path", path, maxSocketPath)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("admin socket directory: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".admin")
	if err != nil {
		return nil, nil, fmt.Errorf("admin socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	if len(bound) > maxSocketPath {
		return nil, nil, fmt.Errorf("admin socket %s: its temporary name %s is longer than %d bytes; use a shorter path", path, bound, maxSocketPath)
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("admin socket: %w", err)
	}
	// The listener's own name is the temporary one; Server.Close removes
	// path itself, and only if it is still this socket.
	l.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, os.FileInfo, error) {
		l.Close()
		return nil, nil, err
	}
	if err := os.Chmod(bound, 0o600); err != nil {
		return fail(fmt.Errorf("admin socket: %w", err))
	}
	if err := os.Lchown(bound, os.Geteuid(), os.Getegid()); err != nil {
		return fail(fmt.Errorf("admin socket: %w", err))
	}
	// Two rounds: a stale socket found on the first is removed, and the
	// second link should then succeed unless another daemon won the race.
	for range 2 {
		err = os.Link(bound, path)
		if !errors.Is(err, os.ErrExist) {
			break
		}
		if err = removeStale(path); err != nil {
			return fail(err)
		}
	}
	if err != nil {
		return fail(fmt.Errorf("admin socket: %w", err))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(fmt.Errorf("admin socket: %w", err))
	}
	return l, fi, nil
}

// removeStale removes path if it is a socket that nothing answers on, the
// leftover of a daemon that died without cleaning up. Anything else at
// path is an error: a live daemon's socket, or a file that is not a socket
// at all (which is never removed).
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // gone meanwhile
	}
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("admin socket %s: exists and is not a socket (%s); not removing it", path, typeName(fi.Mode()))
	}
	c, err := net.DialTimeout("unix", path, liveProbeTimeout)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("admin socket: another spooky is serving on %s", path)
	case errors.Is(err, syscall.ECONNREFUSED):
		// Nobody listens: stale.
	case errors.Is(err, os.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("admin socket %s: exists and cannot be probed: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("admin socket: remove stale %s: %w", path, err)
	}
	return nil
}

func typeName(m os.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case os.ModeDir:
		return "a directory"
	case os.ModeSymlink:
		return "a symbolic link"
	case os.ModeNamedPipe:
		return "a named pipe"
	case os.ModeDevice, os.ModeDevice | os.ModeCharDevice:
		return "a device"
	}
	return m.Type().String()
}

// CheckListen checks a TCP listen address for the admin API: host:port
// with the host a loopback IP literal (127.0.0.0/8 or ::1). Names, even
// "localhost", are refused: what they resolve to is up to /etc/hosts and
// the resolver, and the API must never end up reachable from the network.
// Port 0 (any free port) is allowed here, for tests; configuration
// validation requires a real port.
func CheckListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("admin listen %q: %w", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" || ip.Is4In6() || !ip.IsLoopback() {
		return fmt.Errorf("admin listen %q: %w (want 127.0.0.0/8 or [::1]; the admin API has no authentication)", addr, ErrNotLoopback)
	}
	return nil
}

func listenTCP(addr string) (net.Listener, error) {
	if err := CheckListen(addr); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("admin listen: %s is in use (another spooky serving?): %w", addr, err)
	}
	if err != nil {
		return nil, fmt.Errorf("admin listen: %w", err)
	}
	return l, nil
}
