package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/admin/admintest"
	"github.com/spooky-lb/spooky/config"
)

// mustServeAdmin serves d's admin API on a unix socket until the test
// ends and returns the socket's path.
func mustServeAdmin(tb testing.TB, d admin.Daemon) string {
	tb.Helper()
	// Short: a unix socket path has at most 107 bytes.
	dir, err := os.MkdirTemp("", "adm")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return mustServeAdminOn(tb, config.AdminConfig{Socket: filepath.Join(dir, "admin.sock")}, d)
}

func mustServeAdminOn(tb testing.TB, cfg config.AdminConfig, d admin.Daemon) string {
	tb.Helper()
	srv, err := admin.Listen(cfg, d, nil)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	tb.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			tb.Error(err)
		}
	})
	return srv.Addr()
}

// daemonAt returns a fixture daemon whose status names path as its
// configuration, so a test can tell daemons apart.
func daemonAt(path string) *admintest.Daemon {
	d := admintest.New()
	d.St.Config.Path = path
	return d
}

func TestAdminCommandsFindTheDaemonOfTheirConfigFile(t *testing.T) {
	a := mustServeAdmin(t, daemonAt("/etc/spooky/a.yaml"))
	b := mustServeAdminOn(t, config.AdminConfig{Listen: "127.0.0.1:0"}, daemonAt("/etc/spooky/b.yaml"))
	fileA := mustWriteFile(t, "a.yaml", "admin: {socket: "+a+"}\n")
	fileB := mustWriteFile(t, "b.yaml", "admin: {listen: \""+b+"\"}\n")
	// A file with problems elsewhere still says where the daemon is: the
	// operator about to reload it needs that.
	broken := mustWriteFile(t, "broken.yaml", "admin: {socket: "+a+"}\nservices:\n  - name: web\n    port: 70000\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"the socket of -c's admin section", []string{"-c", fileA}, "/etc/spooky/a.yaml"},
		{"the listen address of -c's admin section", []string{"-c", fileB}, "/etc/spooky/b.yaml"},
		{"--admin over the config file", []string{"-c", fileA, "--admin", b}, "/etc/spooky/b.yaml"},
		{"the admin section of a file with problems", []string{"-c", broken}, "/etc/spooky/a.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, append([]string{"status"}, tt.args...)...)
			if code != 0 || !strings.HasPrefix(out, "config       "+tt.want+"\n") {
				t.Errorf("exit %d, stdout:\n%s\nstderr %q; want the status of %s", code, out, errOut, tt.want)
			}
		})
	}
}

func TestTheSpookyAdminVariableNamesTheDaemon(t *testing.T) {
	t.Setenv("SPOOKY_ADMIN", mustServeAdmin(t, daemonAt("/etc/spooky/env.yaml")))
	out, errOut, code := runCLI(t, "status", "-c", "/nonexistent/spooky.yaml")
	if code != 0 || !strings.HasPrefix(out, "config       /etc/spooky/env.yaml\n") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestAdminCommandsSayWhyTheyCannotFindTheDaemon(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "admin.sock")
	noSocket := mustWriteFile(t, "nosock.yaml", "admin: {socket: "+missing+"}\n")
	relative := mustWriteFile(t, "relative.yaml", "admin: {socket: admin.sock}\n")
	garbled := mustWriteFile(t, "garbled.yaml", "admin: [socket\n")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no daemon on the socket", []string{"status", "--admin", missing},
			"spooky: status: no spooky daemon at " + missing + " (is it running? --admin sets the socket)\n"},
		{"no daemon on the config's socket", []string{"reload", "-c", noSocket},
			"spooky: reload: no spooky daemon at " + missing + " (is it running? --admin sets the socket)\n"},
		{"an unreadable config file", []string{"backends", "-c", filepath.Join(dir, "none.yaml")},
			"spooky: backends: cannot read the admin socket from the config file: open " + filepath.Join(dir, "none.yaml") +
				": no such file or directory; --admin PATH|HOST:PORT names the daemon's API\n"},
		{"a relative socket path", []string{"drain", "web/b1", "-c", relative},
			"spooky: drain: " + relative + ": admin socket \"admin.sock\" is not an absolute path; --admin PATH|HOST:PORT names the daemon's API\n"},
		{"a file that is not YAML", []string{"undrain", "web/b1", "-c", garbled},
			"spooky: undrain: cannot read the admin section of " + garbled + ": "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, tt.args...)
			if code != 1 || out != "" || !strings.HasPrefix(errOut, tt.want) {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, stderr:\n%s", code, out, errOut, tt.want)
			}
		})
	}
}
