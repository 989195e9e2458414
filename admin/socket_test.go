package admin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/admin/admintest"
	"github.com/spooky-lb/spooky/config"
)

// dialEnv makes the test binary, run as a child, call Status on the admin
// API at its value and exit: 0 if answered, 3 with the error otherwise.
const dialEnv = "SPOOKY_ADMIN_TEST_DIAL"

func TestMain(m *testing.M) {
	if addr := os.Getenv(dialEnv); addr != "" {
		c, err := admin.Dial(addr)
		if err == nil {
			_, err = c.Status(context.Background())
		}
		if err != nil {
			fmt.Println(err)
			os.Exit(3)
		}
		fmt.Println("answered")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// mustStaleSocket leaves a socket at path that nothing listens on, as a
// daemon killed with SIGKILL does.
func mustStaleSocket(tb testing.TB, path string) {
	tb.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		tb.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
}

func TestTheSocketIsMode0600AndOwnedByTheDaemonsUser(t *testing.T) {
	dir := filepath.Join(mustSocketDir(t), "run")
	path := filepath.Join(dir, "admin.sock")
	srv, c := mustServe(t, config.AdminConfig{Socket: path}, admintest.New())
	if srv.Addr() != path {
		t.Errorf("Addr() = %q, want %q", srv.Addr(), path)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with mode 0600", fi.Mode())
	}
	if int(st.Uid) != os.Geteuid() || int(st.Gid) != os.Getegid() {
		t.Errorf("socket owned by %d:%d, want the daemon's %d:%d", st.Uid, st.Gid, os.Geteuid(), os.Getegid())
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("the missing parent directory was not created 0755: %v %v", di, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("%s holds %v; want only the socket (no temporary leftovers)", dir, entries)
	}
	if _, err := c.Status(context.Background()); err != nil {
		t.Errorf("status over the socket: %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Close the socket is still there (%v)", err)
	}
}

func TestOtherUsersCannotConnect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a child as uid 65534 against root's socket")
	}
	// The child must be able to run the test binary and reach the socket
	// directory, so that only the socket's own mode can stop it.
	dir := mustSocketDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := mustCopyExecutable(t, filepath.Join(dir, "admin.test"))
	path := filepath.Join(dir, "admin.sock")
	mustServe(t, config.AdminConfig{Socket: path}, admintest.New())

	dialAs := func(uid uint32) (string, error) {
		cmd := exec.Command(bin)
		cmd.Env = []string{dialEnv + "=" + path}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := dialAs(65534)
	if err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("uid 65534 dialled the 0600 socket: exit %v, %q; want permission denied", err, out)
	}
	// The control: with the mode opened up, the same child gets in, so it
	// was the mode that kept it out.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if out, err := dialAs(65534); err != nil || out != "answered" {
		t.Errorf("uid 65534 on a 0666 socket: exit %v, %q; want answered", err, out)
	}
}

// mustCopyExecutable copies the test binary to dst, mode 0755.
func mustCopyExecutable(tb testing.TB, dst string) string {
	tb.Helper()
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
	return dst
}

func TestAStaleSocketIsReplaced(t *testing.T) {
	path := filepath.Join(mustSocketDir(t), "admin.sock")
	mustStaleSocket(t, path)
	before, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	_, c := mustServe(t, config.AdminConfig{Socket: path}, admintest.New())
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("status over the new socket: %v", err)
	}
	after, _ := os.Lstat(path)
	if os.SameFile(before, after) {
		t.Error("the stale socket is still in place")
	}
}

func TestAnythingButAStaleSocketIsLeftAlone(t *testing.T) {
	tests := []struct {
		name string
		make func(tb testing.TB, path string)
		want string
	}{
		{"a regular file", func(tb testing.TB, path string) {
			if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
				tb.Fatal(err)
			}
		}, "exists and is not a socket (a regular file); not removing it"},
		{"a directory", func(tb testing.TB, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				tb.Fatal(err)
			}
		}, "exists and is not a socket (a directory); not removing it"},
		{"a symbolic link to a stale socket", func(tb testing.TB, path string) {
			mustStaleSocket(tb, path+".real")
			if err := os.Symlink(path+".real", path); err != nil {
				tb.Fatal(err)
			}
		}, "exists and is not a socket (a symbolic link); not removing it"},
		{"a named pipe", func(tb testing.TB, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				tb.Fatal(err)
			}
		}, "exists and is not a socket (a named pipe); not removing it"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" stays", func(t *testing.T) {
			dir := mustSocketDir(t)
			path := filepath.Join(dir, "admin.sock")
			tt.make(t, path)
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			srv, err := admin.Listen(config.AdminConfig{Socket: path}, admintest.New(), nil)
			if err == nil {
				srv.Close()
				t.Fatal("Listen took the path")
			}
			if want := "admin socket " + path + ": " + tt.want; err.Error() != want {
				t.Errorf("err = %q, want %q", err, want)
			}
			after, err := os.Lstat(path)
			if err != nil || !os.SameFile(before, after) || after.Mode() != before.Mode() {
				t.Errorf("the path changed: %v %v", after, err)
			}
			if after.Mode().IsRegular() {
				if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
					t.Errorf("the file now holds %q (%v)", b, err)
				}
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".admin") {
					t.Errorf("temporary %s left behind", e.Name())
				}
			}
		})
	}
}

func TestALiveDaemonsSocketIsNotTakenOver(t *testing.T) {
	path := filepath.Join(mustSocketDir(t), "admin.sock")
	_, c := mustServe(t, config.AdminConfig{Socket: path}, admintest.New())
	srv, err := admin.Listen(config.AdminConfig{Socket: path}, admintest.New(), nil)
	if err == nil {
		srv.Close()
		t.Fatal("a second server took the socket of a live one")
	}
	if want := "admin socket: another spooky is serving on " + path; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if _, err := c.Status(context.Background()); err != nil {
		t.Errorf("the first server stopped answering: %v", err)
	}
}

func TestCloseLeavesASocketThatIsNoLongerOurs(t *testing.T) {
	dir := mustSocketDir(t)
	path := filepath.Join(dir, "admin.sock")
	srv, err := admin.Listen(config.AdminConfig{Socket: path}, admintest.New(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Someone replaced the socket (another daemon, by hand).
	other := filepath.Join(dir, "other.sock")
	mustStaleSocket(t, other)
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	replaced, _ := os.Lstat(path)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(path); err != nil || !os.SameFile(fi, replaced) {
		t.Errorf("Close removed a socket that was not its own (%v)", err)
	}
}

func TestListenRefusesAllButLoopbackLiterals(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:9901", true},
		{"127.1.2.3:9901", true},
		{"[::1]:9901", true},
		{"0.0.0.0:9901", false},
		{"198.18.0.1:9901", false},
		{"[::]:9901", false},
		{":9901", false},
		{"localhost:9901", false},
		{"[::ffff:127.0.0.1]:9901", false},
		{"[fe80::1%lo]:9901", false},
		{"127.0.0.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := admin.CheckListen(tt.addr)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckListen(%q) = %v, want ok %v", tt.addr, err, tt.ok)
			}
			if tt.ok {
				return
			}
			srv, err := admin.Listen(config.AdminConfig{Listen: tt.addr}, admintest.New(), nil)
			if err == nil {
				srv.Close()
				t.Fatalf("Listen(%q) listened", tt.addr)
			}
		})
	}
	_, err := admin.Listen(config.AdminConfig{Listen: "198.18.0.1:9901"}, admintest.New(), nil)
	if !errors.Is(err, admin.ErrNotLoopback) {
		t.Errorf("err = %v, want ErrNotLoopback", err)
	}
}

func TestLoopbackTCPServesAndRefusesForeignHosts(t *testing.T) {
	srv, c := mustServe(t, config.AdminConfig{Listen: "127.0.0.1:0"}, admintest.New())
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("status over tcp: %v", err)
	}
	hc := &http.Client{}
	defer hc.CloseIdleConnections()
	base := "http://" + srv.Addr()
	// A DNS rebinding attack reaches 127.0.0.1 under the attacker's name.
	a := mustDoWith(t, hc, base, http.MethodGet, "/v1/status", nil, http.Header{"Host": {"attacker.example:80"}})
	wantErrorAnswer(t, a, http.StatusForbidden, admin.CodeForbidden, `host "attacker.example:80" is not a loopback address`)
	for _, host := range []string{srv.Addr(), "localhost:1"} {
		if a := mustDoWith(t, hc, base, http.MethodGet, "/v1/status", nil, http.Header{"Host": {host}}); a.status != http.StatusOK {
			t.Errorf("Host %s: HTTP %d %s", host, a.status, a.body)
		}
	}
}

func TestCallsWithNoDaemonSaySo(t *testing.T) {
	dir := mustSocketDir(t)
	stale := filepath.Join(dir, "stale.sock")
	mustStaleSocket(t, stale)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := l.Addr().String()
	l.Close()
	for _, addr := range []string{filepath.Join(dir, "missing.sock"), stale, closedPort} {
		t.Run(addr, func(t *testing.T) {
			c, err := admin.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Status(context.Background())
			if !errors.Is(err, admin.ErrNoDaemon) || err.Error() != "no spooky daemon at "+addr {
				t.Errorf("err = %v, want no spooky daemon at %s", err, addr)
			}
		})
	}
}

func TestDialRefusesAnAddressThatIsNeither(t *testing.T) {
	if _, err := admin.Dial("localhost"); err == nil {
		t.Error(`Dial("localhost") accepted an address with neither a / nor a port`)
	}
}
