package integration

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/cid"
	"github.com/spooky-lb/spooky/test/netns"
)

// l7Config is a spooky config whose one l7 service on the lb host proxies
// to the backends' HTTP/3 servers. extra is appended to the route.
func l7Config(t *testing.T, listen netip.AddrPort, upstreams []netip.AddrPort, extra string) string {
	t.Helper()
	certs, err := filepath.Abs("../../examples/certs")
	if err != nil {
		t.Fatal(err)
	}
	var ups strings.Builder
	for _, u := range upstreams {
		fmt.Fprintf(&ups, "      - address: h3://%s\n        tls: {insecure_skip_verify: true}\n", u)
	}
	// A socket of the test's own, apart from a real daemon's default.
	sock := filepath.Join(os.TempDir(), fmt.Sprintf("spooky-l7-%d.sock", os.Getpid()))
	return fmt.Sprintf(`admin:
  socket: %s
services:
  - name: edge
    address: %s
    port: %d
    mode: l7
    tls:
      - server_names: [example.test]
        cert: %s/example.test.crt
        key: %s/example.test.key
    cid:
      - {config_id: 2, server_id_len: 2, nonce_len: 6}
    l7_server_id: "00ff"
    routes:
      - pool: app
%s
pools:
  - name: app
    policy: round_robin
    upstreams:
%s`, sock, listen.Addr(), listen.Port(), certs, certs, extra, ups.String())
}

// daemon is a spooky process in a lab host.
type daemon struct {
	cmd *exec.Cmd
	log *syncBuffer
}

// mustStartDaemon runs `spooky args...` in h and waits for it to log msg.
func mustStartDaemon(t *testing.T, h *netns.Host, msg string, args ...string) *daemon {
	t.Helper()
	return mustStartDaemonEnv(t, h, nil, msg, args...)
}

// mustStartDaemonEnv is mustStartDaemon with env added to the environment.
func mustStartDaemonEnv(t *testing.T, h *netns.Host, env []string, msg string, args ...string) *daemon {
	t.Helper()
	d := &daemon{log: &syncBuffer{}}
	d.cmd = h.Command(mustBuild(t, "spooky"), args...)
	if env != nil {
		d.cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start spooky %v: %v", args, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(d.log, sc.Text())
		}
	}()
	d.mustLog(t, msg)
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			_ = d.cmd.Wait()
		}
	})
	return d
}

// mustLog waits until the daemon's log holds msg.
func (d *daemon) mustLog(t *testing.T, msg string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(d.log.String(), msg) {
		if time.Now().After(deadline) {
			t.Fatalf("spooky did not log %q within 20s; log:\n%s", msg, d.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mustStop sends SIGTERM and wants exit status 0.
func (d *daemon) mustStop(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("spooky exited with %v after SIGTERM; log:\n%s", err, d.log)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("spooky did not exit within 15s of SIGTERM; log:\n%s", d.log)
	}
}

func TestRequestTierProxiesHTTP3ToBackendsAndReloads(t *testing.T) {
	lab := netns.New(t, netns.Config{Backends: 2})
	var upstreams []netip.AddrPort
	for i, h := range lab.Backends {
		addr := netip.AddrPortFrom(h.IPv4, 8443)
		mustStartBackend(t, h, fmt.Sprintf("b%d", i), addr, cid.Config{ID: 0, ServerIDLen: 2, NonceLen: 6}, []byte{0, byte(i + 1)})
		upstreams = append(upstreams, addr)
	}
	listen := netip.AddrPortFrom(lab.LB.IPv4, 443)
	cfgPath := filepath.Join(t.TempDir(), "spooky.yaml")
	mustWrite(t, cfgPath, l7Config(t, listen, upstreams, ""))
	d := mustStartDaemon(t, lab.LB, "msg=serving", "serve", "-c", cfgPath)

	capture, err := lab.Client.Capture()
	if err != nil {
		t.Fatal(err)
	}
	client := mustHTTP3Client(t, lab.Client, lab.Client.IPv4)
	url := "https://" + listen.String() + "/"
	get := func() *http.Response {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d", url, resp.StatusCode)
		}
		return resp
	}

	t.Run("requests are spread round robin over both upstreams", func(t *testing.T) {
		seen := map[string]int{}
		for range 10 {
			seen[get().Header.Get("X-Backend")]++
		}
		if seen["b0"] != 5 || seen["b1"] != 5 {
			t.Fatalf("backends answered %v, want b0 and b1 5 times each", seen)
		}
	})

	t.Run("the request tier's connection IDs carry its own server ID", func(t *testing.T) {
		frames, err := capture.Stop()
		if err != nil {
			t.Fatal(err)
		}
		dec, err := cid.NewDecoder(cid.Config{ID: 2, ServerIDLen: 2, NonceLen: 6})
		if err != nil {
			t.Fatal(err)
		}
		var decoded int
		for _, f := range frames {
			d, ok := netns.ParseUDP(f.Data)
			if !ok || d.Src != listen {
				continue
			}
			h, err := cid.ParseHeader(d.Payload, 0)
			if err != nil || !h.Long || len(h.SCID) == 0 {
				continue
			}
			sid, err := dec.ServerID(nil, h.SCID)
			if err != nil {
				t.Fatalf("SCID %x from the request tier: %v", h.SCID, err)
			}
			if string(sid) != "\x00\xff" {
				t.Fatalf("SCID %x decodes to server ID %x, want 00ff", h.SCID, sid)
			}
			decoded++
		}
		if decoded == 0 {
			t.Fatal("saw no long header from the request tier")
		}
	})

	t.Run("a broken config on reload is rejected and the old one keeps serving", func(t *testing.T) {
		mustWrite(t, cfgPath, "services: [\n")
		_ = d.cmd.Process.Signal(syscall.SIGHUP)
		d.mustLog(t, "reload rejected")
		get()
	})

	t.Run("a valid reload applies a new response header", func(t *testing.T) {
		mustWrite(t, cfgPath, l7Config(t, listen, upstreams,
			"        transforms: {response_headers: {set: {X-Spooky: reloaded}}}"))
		_ = d.cmd.Process.Signal(syscall.SIGHUP)
		d.mustLog(t, "msg=reloaded")
		if got := get().Header.Get("X-Spooky"); got != "reloaded" {
			t.Fatalf("X-Spooky = %q after reload, want reloaded", got)
		}
	})

	t.Run("SIGTERM shuts the tier down cleanly", func(t *testing.T) {
		d.mustStop(t)
	})
}
