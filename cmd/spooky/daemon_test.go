package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/admin"
)

// lockedBuffer is a bytes.Buffer the daemon's logger and the test share.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// daemonConfig is a config whose one backend, a closed port on loopback
// (nothing leaves the host), is checked over TCP every 100 ms. Only
// forwarding proxy takes a loopback backend with its own port; serve runs
// no packet tier, so the service is only checked.
func daemonConfig(sock, level string, port int) string {
	return fmt.Sprintf(`log: {level: %s}
admin: {socket: %s}
services:
  - name: web
    address: 198.18.0.10
    port: 443
    forwarding: proxy
    health_check: {type: tcp, address: backend, interval: 100ms, timeout: 50ms, rise: 1, fall: 2}
    backends:
      - {name: b1, address: 127.0.0.1, port: %d}
`, level, sock, port)
}

// closedPort returns a loopback TCP port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// TestServeDaemonFollowsItsConfig runs `spooky serve` in-process: its
// checker takes a dead backend out, the admin API reports it, and a reload
// through the API applies a new log level; a broken file is refused with
// its line and the old config keeps running.
func TestServeDaemonFollowsItsConfig(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	cfgPath := filepath.Join(dir, "spooky.yaml")
	port := closedPort(t)
	if err := os.WriteFile(cfgPath, []byte(daemonConfig(sock, "info", port)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"spooky", "serve", "-c", cfgPath}, env{stdout: &bytes.Buffer{}, stderr: &stderr})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("spooky serve exited %d after its context ended; log:\n%s", code, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("spooky serve did not stop within 15s; log:\n%s", stderr.String())
		}
	})
	c, err := admin.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	state := func() string {
		st, err := c.Status(ctx)
		if err != nil {
			return err.Error()
		}
		return st.Services[0].Backends[0].State
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10s: %s; log:\n%s", what, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	waitFor("the dead backend is unhealthy", func() bool { return state() == "unhealthy" })
	if strings.Contains(stderr.String(), "health check failed") {
		t.Fatalf("a debug line was logged at level info:\n%s", stderr.String())
	}

	if err := os.WriteFile(cfgPath, []byte(daemonConfig(sock, "debug", port)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reload(ctx); err != nil {
		t.Fatalf("reload: %v", err)
	}
	waitFor("failed probes are logged at debug after the reload", func() bool {
		return strings.Contains(stderr.String(), "health check failed")
	})

	if err := os.WriteFile(cfgPath, []byte("services: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = c.Reload(ctx)
	if p := admin.Problems(err); len(p) == 0 || p[0].File != cfgPath || p[0].Line == 0 {
		t.Fatalf("reload of a broken file: %v; want its problems with file and line", err)
	}
	if got := state(); got != "unhealthy" {
		t.Errorf("after a rejected reload the backend is %q, want the running config's unhealthy", got)
	}

	// Files that crashed or wedged a daemon on reload: a merge key whose
	// alias contains itself (stack overflow), and a service certificate
	// that is a FIFO (a read that never returns).
	fifo := filepath.Join(dir, "cert.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	good := daemonConfig(sock, "debug", port)
	for name, bad := range map[string]string{
		"a self-referencing merge key": strings.Replace(good, "    port: 443\n", "    port: 443\n    <<: &m [*m]\n", 1),
		"a FIFO as a certificate": good + fmt.Sprintf(`  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls: [{server_names: [example.test], cert: %s, key: %s}]
    routes: [{pool: p}]
pools:
  - name: p
    upstreams: [{address: "http://198.18.0.30:80"}]
`, fifo, fifo),
	} {
		if err := os.WriteFile(cfgPath, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.Reload(rctx)
		rcancel()
		if len(admin.Problems(err)) == 0 {
			t.Errorf("reload of %s: %v; want it refused with its problems", name, err)
		}
		if got := state(); got != "unhealthy" {
			t.Errorf("after the reload of %s the daemon answers %q, want the running config's unhealthy", name, got)
		}
	}
}

// TestServeReloadsAConfigMapSwap runs `spooky serve --watch` on a config
// laid out as Kubernetes mounts a ConfigMap (the file is a symlink through
// ..data, which an update swaps): a new version is applied without a
// signal, a broken one is refused once and the old config serves on.
func TestServeReloadsAConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	port := closedPort(t)
	version := func(name, contents string) string {
		t.Helper()
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "spooky.yaml"), []byte(contents), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(contents))
		return hex.EncodeToString(sum[:])
	}
	// swap points ..data at version name in one rename, as the kubelet does.
	swap := func(name string) {
		t.Helper()
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(name, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	v1 := version("..v1", daemonConfig(sock, "info", port))
	swap("..v1")
	cfgPath := filepath.Join(dir, "spooky.yaml")
	if err := os.Symlink("..data/spooky.yaml", cfgPath); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"spooky", "serve", "--watch", "50ms", "-c", cfgPath}, env{stdout: &bytes.Buffer{}, stderr: &stderr})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("spooky serve did not stop within 15s; log:\n%s", stderr.String())
		}
	})
	c, err := admin.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	running := func() string {
		st, err := c.Status(ctx)
		if err != nil {
			return err.Error()
		}
		return st.Config.SHA256
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10s: %s; log:\n%s", what, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the first version runs", func() bool { return running() == v1 })

	v2 := version("..v2", daemonConfig(sock, "debug", port))
	swap("..v2")
	waitFor("the swapped-in version runs", func() bool { return running() == v2 })

	version("..v3", "services: [\n")
	swap("..v3")
	waitFor("the broken version is refused", func() bool {
		return strings.Contains(stderr.String(), "reload rejected")
	})
	// Twenty more checks of the unchanged file: it is not tried again.
	time.Sleep(20 * 50 * time.Millisecond)
	if n := strings.Count(stderr.String(), "reload rejected"); n != 1 {
		t.Errorf("the broken version was tried %d times, want once", n)
	}
	if got := running(); got != v2 {
		t.Errorf("after the broken version the running config is %s, want %s", got, v2)
	}
}
