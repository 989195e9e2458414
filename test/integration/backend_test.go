package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/test/netns"
)

// binDir holds the binaries built for this test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spooky-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var buildOnce sync.Map // command name → *buildResult

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// mustBuild builds ./cmd/NAME once per test run and returns the binary's path.
func mustBuild(tb testing.TB, name string) string {
	tb.Helper()
	v, _ := buildOnce.LoadOrStore(name, &buildResult{})
	r := v.(*buildResult)
	r.once.Do(func() {
		r.path = filepath.Join(binDir, name)
		out, err := exec.Command("go", "build", "-o", r.path, "github.com/spooky-lb/spooky/cmd/"+name).CombinedOutput()
		if err != nil {
			r.err = fmt.Errorf("go build %s: %v\n%s", name, err, out)
		}
	})
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return r.path
}

// backend is a spooky-backend process running in a lab host.
type backend struct {
	name     string
	addr     netip.AddrPort
	serverID []byte
	cfg      cid.Config
	cmd      *exec.Cmd
	log      *syncBuffer
	killed   bool // by kill: cleanup has nothing left to stop
}

// mustStartBackend runs spooky-backend in host h, bound to addr, and waits
// until it logs that it serves. At cleanup it is sent SIGTERM and must exit
// cleanly.
func mustStartBackend(tb testing.TB, h *netns.Host, name string, addr netip.AddrPort, cfg cid.Config, serverID []byte) *backend {
	tb.Helper()
	args := []string{
		"--listen", addr.String(), "--name", name,
		"--config-id", strconv.Itoa(int(cfg.ID)), "--server-id", hex.EncodeToString(serverID),
		"--nonce-len", strconv.Itoa(cfg.NonceLen),
	}
	if cfg.Key != nil {
		args = append(args, "--key", hex.EncodeToString(cfg.Key))
	}
	b := &backend{name: name, addr: addr, serverID: serverID, cfg: cfg, log: &syncBuffer{}}
	b.cmd = h.Command(mustBuild(tb, "spooky-backend"), args...)
	stderr, err := b.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(b.log, sc.Text())
			if !signalled && strings.Contains(sc.Text(), "serving HTTP/3") {
				close(ready)
				signalled = true
			}
		}
		if !signalled {
			close(ready)
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		tb.Fatalf("%s did not start serving within 30s; log:\n%s", name, b.log)
	}
	if !strings.Contains(b.log.String(), "serving HTTP/3") {
		_ = b.cmd.Wait()
		tb.Fatalf("%s exited before serving (%v); log:\n%s", name, b.cmd.ProcessState, b.log)
	}
	tb.Cleanup(func() { b.mustStop(tb) })
	return b
}

// mustStop sends SIGTERM and expects a clean exit within the grace period.
func (b *backend) mustStop(tb testing.TB) {
	tb.Helper()
	if b.killed {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- b.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			tb.Errorf("%s exited with %v after SIGTERM, want 0; log:\n%s", b.name, err, b.log)
		}
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		tb.Errorf("%s did not exit within 10s of SIGTERM; log:\n%s", b.name, b.log)
	}
}

// kill ends the backend at once, as a crash would.
func (b *backend) kill() {
	b.killed = true
	_ = b.cmd.Process.Kill()
	_ = b.cmd.Wait()
}

// mustHTTP3Client returns an HTTP/3 client whose packets leave from a UDP
// socket bound to local inside host h.
func mustHTTP3Client(tb testing.TB, h *netns.Host, local netip.Addr) *http.Client {
	tb.Helper()
	qt := &quic.Transport{Conn: mustUDPSocket(tb, h, local)}
	rt := &http3.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // the backends' certificates are self-signed
		QUICConfig:      &quic.Config{InitialPacketSize: 1252},
		Dial: func(ctx context.Context, addr string, tlsConf *tls.Config, conf *quic.Config) (*quic.Conn, error) {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return nil, err
			}
			return qt.DialEarly(ctx, ua, tlsConf, conf)
		},
	}
	tb.Cleanup(func() { rt.Close(); qt.Close() })
	return &http.Client{Transport: rt, Timeout: 10 * time.Second}
}

// mustGetBackendName GETs / and checks the backend answered with its name.
func mustGetBackendName(tb testing.TB, c *http.Client, url, want string) {
	tb.Helper()
	resp, err := c.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		tb.Fatalf("GET %s: read body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != want+"\n" || resp.Header.Get("X-Backend") != want {
		tb.Fatalf("GET %s = %d %q X-Backend=%q; want 200 %q", url, resp.StatusCode, body, resp.Header.Get("X-Backend"), want+"\n")
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
