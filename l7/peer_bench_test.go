package l7

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"golang.org/x/sys/unix"
)

// The peer benchmark runs the same HTTP/3 load through three servers, one
// after another in one run, each a process of its own pinned with its
// upstream to one CPU (GOMAXPROCS=1), the load generator on the others:
//
//   - spooky: the real daemon (`spooky serve`, built from ./cmd/spooky)
//     proxying to an HTTP/1.1 upstream;
//   - Caddy: `reverse_proxy` to the same upstream with HTTP/3 on, built
//     from its Go module in bench/caddy (its own go.mod, so the product
//     does not depend on Caddy);
//   - plain: a quic-go HTTP/3 server answering the 1 KiB itself, the floor
//     any HTTP/3 proxy pays before it proxies anything.
//
// The upstream and the plain server are this test binary again
// (TestPeerChild). CPU time is read per process from /proc/<pid>/stat, so
// spooky's own CPU per request is told apart from the upstream's.
const (
	// peerRoleEnv selects TestPeerChild's role: "upstream" (HTTP/1.1,
	// cleartext) or "plain" (HTTP/3); peerDirEnv names the directory with
	// the certificate for "plain".
	peerRoleEnv = "SPOOKY_L7_PEER_ROLE"
	peerDirEnv  = "SPOOKY_L7_PEER_DIR"
	// peerDurationEnv, peerRoundsEnv: how long each point runs (default
	// 2s) and how many interleaved rounds the medians are taken over
	// (default 3). peerOutEnv, when set, names a JSON file for the
	// figures (scripts/plot-peers.py draws docs/peers.png from it).
	peerDurationEnv = "SPOOKY_PEER_DURATION"
	peerRoundsEnv   = "SPOOKY_PEER_ROUNDS"
	peerOutEnv      = "SPOOKY_PEER_OUT"
	// peerCaddyEnv names a caddy binary to use instead of building one.
	peerCaddyEnv = "SPOOKY_PEER_CADDY"
	// peerPerfEnv, when set, names a file for a `perf record -g` of the
	// spooky process across its 4×16 runs: its own profile, without the
	// upstream's or the load generator's.
	peerPerfEnv = "SPOOKY_PEER_PERF"
	// peerSpookyEnv adds space-separated NAME=VALUE pairs to spooky's
	// environment (GOGC=..., GODEBUG=...), to measure a setting.
	peerSpookyEnv = "SPOOKY_PEER_SPOOKY_ENV"
	// peerBBinEnv and peerBEnvEnv, when either is set, add a second spooky
	// ("spooky-b": that binary, default the same one, with those
	// NAME=VALUE pairs) to every round, for an A/B comparison of a change
	// or a setting measured side by side under the same machine load.
	peerBBinEnv = "SPOOKY_PEER_B_BIN"
	peerBEnvEnv = "SPOOKY_PEER_B_ENV"
)

// TestPeerChild is the peer benchmark's upstream or plain HTTP/3 server:
// it prints its address and serves until its stdin closes.
func TestPeerChild(t *testing.T) {
	role := os.Getenv(peerRoleEnv)
	if role == "" {
		t.Skip("runs only as the peer benchmark's child process (" + peerRoleEnv + " unset)")
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1024")
		_, _ = w.Write(benchBody)
	})
	var addr string
	switch role {
	case "upstream":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: h}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		addr = ln.Addr().String()
	case "plain":
		kp, err := tls.LoadX509KeyPair(filepath.Join(os.Getenv(peerDirEnv), "bench-cert.pem"), filepath.Join(os.Getenv(peerDirEnv), "bench-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		srv := &http3.Server{Handler: h, TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{kp}})}
		go func() { _ = srv.Serve(udp) }()
		defer srv.Close()
		addr = udp.LocalAddr().String()
	default:
		t.Fatalf("unknown role %q", role)
	}
	fmt.Printf("%sready %s\n", benchRigPrefix, addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// peerProc is a running server process of the peer benchmark.
type peerProc struct {
	name string
	addr string // where it listens (UDP for HTTP/3 servers)
	cmd  *exec.Cmd
	in   io.WriteCloser
}

// startPeerProc starts cmd pinned to cpus with GOMAXPROCS=1. If ready is
// true its stdout must announce "ready ADDR" (TestPeerChild); otherwise
// addr is where it will listen.
func startPeerProc(tb testing.TB, name string, cmd *exec.Cmd, cpus []int, announce bool, addr string) *peerProc {
	tb.Helper()
	cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	dieWithParent(cmd)
	p := &peerProc{name: name, addr: addr, cmd: cmd}
	var err error
	if p.in, err = cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	var out *bufio.Scanner
	if announce {
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			tb.Fatal(err)
		}
		out = bufio.NewScanner(stdout)
	}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	if err := startPinned(cmd.Start, cpus); err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	tb.Cleanup(func() {
		_ = p.in.Close()
		_ = cmd.Process.Signal(unix.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	if announce {
		for out.Scan() {
			if rest, ok := strings.CutPrefix(out.Text(), benchRigPrefix+"ready "); ok {
				p.addr = rest
				go func() {
					for out.Scan() { // keep the pipe drained
					}
				}()
				break
			}
		}
		if p.addr == "" {
			tb.Fatalf("%s exited before announcing its address", name)
		}
	}
	return p
}

// cpu is the process's CPU time so far (user + system, all threads), from
// /proc/<pid>/stat in clock ticks (USER_HZ, 100 on Linux).
func (p *peerProc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.name, err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%s: parse stat: %w", p.name, err)
	}
	return time.Duration(ut+st) * (time.Second / 100), nil
}

// rss is the process's resident set size (VmRSS) and the part of it that
// is its own memory rather than pages of its executable and libraries
// (RssAnon), in bytes.
func (p *peerProc) rss() (total, anon int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", p.name, err)
	}
	field := func(name string) int64 {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				return kb << 10
			}
		}
		return 0
	}
	total, anon = field("VmRSS"), field("RssAnon")
	if total == 0 {
		return 0, 0, fmt.Errorf("%s: no VmRSS", p.name)
	}
	return total, anon, nil
}

// goBuild builds pkg (in dir, "" for this module) into out, or says why not.
func goBuild(dir, out, pkg string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	cmd := exec.Command(gobin, "build", "-o", out, pkg)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// freePort returns a loopback UDP port that was free a moment ago.
func freePort(tb testing.TB) int {
	tb.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// waitHTTP3 polls addr with HTTP/3 GETs until one answers 200.
func waitHTTP3(tb testing.TB, addr string, tc *tls.Config) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		lc := loadConfig{URL: "https://bench.spooky.test/", Addr: addr, HTTP3: true, TLS: tc, Requests: 1}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		var res loadResult
		res, err = runLoad(ctx, lc)
		cancel()
		if err == nil && res.Errors == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("%s did not answer HTTP/3 in 30s: %v", addr, err)
}

// peerPoint is one load shape of the peer benchmark.
type peerPoint struct{ Conns, Streams int }

func (p peerPoint) total() int { return p.Conns * p.Streams }

// peerFigure is what one server did at one point, the median over rounds.
type peerFigure struct {
	Server       string
	Streams      int
	Conns        int
	RPS          float64
	P50us, P99us float64
	// CPUus is the server process's own CPU per request, µs; UpstreamCPUus
	// the upstream's (0 for the plain server, which has none).
	CPUus, UpstreamCPUus float64
	// LoadCPU is the load generator's CPU use during the run (1 = one core).
	LoadCPU float64
}

// BenchmarkPeers runs the same load through spooky, Caddy and a plain
// quic-go HTTP/3 server at 1, 4, 16 and 64 (4 connections × 16) streams,
// 1 KiB responses from an HTTP/1.1 upstream, and reports the ratios the
// request tier's targets are stated in. Every point runs for
// SPOOKY_PEER_DURATION (2s) per server, over SPOOKY_PEER_ROUNDS (3)
// interleaved rounds; the medians are logged as a table. Caddy is built
// from bench/caddy; when it cannot be (no module proxy, say) the benchmark
// runs without it and says so.
func BenchmarkPeers(b *testing.B) {
	if os.Getenv(peerRoleEnv) != "" {
		b.Skip("child process")
	}
	dur := 2 * time.Second
	if v := os.Getenv(peerDurationEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("%s: %v", peerDurationEnv, err)
		}
		dur = d
	}
	rounds := 3
	if v := os.Getenv(peerRoundsEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s: want a positive count, got %q", peerRoundsEnv, v)
		}
		rounds = n
	}
	cpus, err := allowedCPUs()
	if err != nil {
		b.Fatal(err)
	}
	rigCPUs, loadCPUs := cpus[len(cpus)-1:], cpus[:len(cpus)-1]
	if len(loadCPUs) == 0 {
		loadCPUs = rigCPUs
	}
	dir := b.TempDir()
	certFile, keyFile, pool, _, err := writeSelfSigned(dir, "bench.spooky.test")
	if err != nil {
		b.Fatal(err)
	}
	tc := &tls.Config{RootCAs: pool, ServerName: "bench.spooky.test"}

	// Binaries first, before anything runs.
	spookyBin := filepath.Join(dir, "spooky")
	if err := goBuild("", spookyBin, "github.com/spooky-lb/spooky/cmd/spooky"); err != nil {
		b.Fatal(err)
	}
	caddyBin := os.Getenv(peerCaddyEnv)
	if caddyBin == "" {
		caddyBin = filepath.Join(dir, "caddy")
		if err := goBuild(filepath.Join("..", "bench", "caddy"), caddyBin, "."); err != nil {
			b.Logf("Caddy left out: it could not be built from bench/caddy (%v)", err)
			caddyBin = ""
		}
	}

	self := func(role string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPeerChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), peerRoleEnv+"="+role, peerDirEnv+"="+dir)
		return cmd
	}
	upstream := startPeerProc(b, "upstream", self("upstream"), rigCPUs, true, "")
	plain := startPeerProc(b, "plain", self("plain"), rigCPUs, true, "")

	startSpooky := func(name, bin string, env []string) *peerProc {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(b)))
		_, port, _ := net.SplitHostPort(addr)
		cfg := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`log: {level: warn}
admin: {socket: %s}
services:
  - name: bench
    address: 127.0.0.1
    port: %s
    mode: l7
    tls: [{server_names: [bench.spooky.test], cert: %s, key: %s}]
    routes: [{pool: up}]
pools:
  - name: up
    upstreams: [{address: "http://%s"}]
`, filepath.Join(dir, name+".sock"), port, certFile, keyFile, upstream.addr)), 0o600); err != nil {
			b.Fatal(err)
		}
		cmd := exec.Command(bin, "serve", "-c", cfg)
		cmd.Env = append(os.Environ(), env...)
		return startPeerProc(b, name, cmd, rigCPUs, false, addr)
	}
	spooky := startSpooky("spooky", spookyBin, strings.Fields(os.Getenv(peerSpookyEnv)))
	servers := []*peerProc{spooky}
	if bbin, benv := os.Getenv(peerBBinEnv), os.Getenv(peerBEnvEnv); bbin != "" || benv != "" {
		if bbin == "" {
			bbin = spookyBin
		}
		servers = append(servers, startSpooky("spooky-b", bbin, strings.Fields(benv)))
	}

	if caddyBin != "" {
		caddyAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(b)))
		_, cport, _ := net.SplitHostPort(caddyAddr)
		cf := filepath.Join(dir, "Caddyfile")
		if err := os.WriteFile(cf, []byte(fmt.Sprintf(`{
	admin off
	auto_https off
	persist_config off
	servers {
		protocols h1 h2 h3
	}
}
https://bench.spooky.test:%s {
	bind 127.0.0.1
	tls %s %s
	reverse_proxy %s
}
`, cport, certFile, keyFile, upstream.addr)), 0o600); err != nil {
			b.Fatal(err)
		}
		caddyCmd := exec.Command(caddyBin, "run", "--config", cf, "--adapter", "caddyfile")
		caddyCmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
		caddyCmd.Stderr = io.Discard // its startup log; failures show as no answer below
		servers = append(servers, startPeerProc(b, "caddy", caddyCmd, rigCPUs, false, caddyAddr))
	}
	servers = append(servers, plain)
	for _, s := range servers {
		waitHTTP3(b, s.addr, tc)
	}

	// Idle memory: after one request (above) and a moment to settle.
	time.Sleep(time.Second)
	idleRSS, idleAnon := map[string]int64{}, map[string]int64{}
	for _, s := range servers {
		if idleRSS[s.name], idleAnon[s.name], err = s.rss(); err != nil {
			b.Fatal(err)
		}
	}

	restore, err := pinProcess(loadCPUs)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = restore() }()

	points := []peerPoint{{1, 1}, {1, 4}, {1, 16}, {4, 16}}
	samples := map[string][]peerFigure{} // by server and point
	key := func(s string, p peerPoint) string { return s + "/" + strconv.Itoa(p.total()) }
	for range rounds {
		for _, p := range points {
			for _, s := range servers {
				var stopPerf func()
				if out := os.Getenv(peerPerfEnv); out != "" && s == spooky && p.total() == 64 {
					stopPerf = startPerf(b, s, out)
				}
				f, err := measurePeer(s, upstream, p, tc, dur)
				if stopPerf != nil {
					stopPerf()
				}
				if err != nil {
					b.Fatal(err)
				}
				samples[key(s.name, p)] = append(samples[key(s.name, p)], f)
			}
		}
	}
	b.StopTimer()

	var figs []peerFigure
	med := map[string]peerFigure{}
	for _, p := range points {
		for _, s := range servers {
			f := medianFigure(samples[key(s.name, p)])
			med[key(s.name, p)] = f
			figs = append(figs, f)
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "medians of %d rounds, %s per point; CPU per request is each server process's own\n", rounds, dur)
	fmt.Fprintf(&sb, "%-8s %-7s %9s %9s %9s %9s %12s %8s\n", "server", "streams", "req/s", "p50 µs", "p99 µs", "CPU µs/req", "upstream µs", "loadgen")
	for _, f := range figs {
		fmt.Fprintf(&sb, "%-8s %-7s %9.0f %9.0f %9.0f %9.1f %12.1f %7.0f%%\n", f.Server, fmt.Sprintf("%dx%d", f.Conns, f.Streams), f.RPS, f.P50us, f.P99us, f.CPUus, f.UpstreamCPUus, f.LoadCPU*100)
	}
	if _, ok := med[key("spooky-b", points[0])]; ok {
		fmt.Fprintf(&sb, "spooky-b / spooky:\n")
		for _, p := range points {
			a, bb := med[key("spooky", p)], med[key("spooky-b", p)]
			fmt.Fprintf(&sb, "  %2d streams: req/s %.2f×, p99 %.2f×, CPU/req %.2f×\n", p.total(), bb.RPS/a.RPS, bb.P99us/a.P99us, bb.CPUus/a.CPUus)
		}
	}
	fmt.Fprintf(&sb, "ratios (spooky / caddy, spooky / plain):\n")
	for _, p := range points {
		sp, cd, pl := med[key("spooky", p)], med[key("caddy", p)], med[key("plain", p)]
		fmt.Fprintf(&sb, "  %2d streams:", p.total())
		if cd.RPS > 0 {
			fmt.Fprintf(&sb, " req/s %.2f× caddy, p99 %.2f× caddy;", sp.RPS/cd.RPS, sp.P99us/cd.P99us)
		}
		fmt.Fprintf(&sb, " req/s %.2f× plain, own CPU/req %.2f× plain\n", sp.RPS/pl.RPS, sp.CPUus/pl.CPUus)
	}
	for _, s := range servers {
		after, afterAnon, err := s.rss()
		if err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&sb, "RSS %-8s idle at start %5.1f MB (anon %5.1f), idle after the load %5.1f MB (anon %5.1f)\n", s.name,
			float64(idleRSS[s.name])/1e6, float64(idleAnon[s.name])/1e6, float64(after)/1e6, float64(afterAnon)/1e6)
	}
	fmt.Print(sb.String()) // b.Log would truncate the table

	head := peerPoint{4, 16}
	sp, cd, pl := med[key("spooky", head)], med[key("caddy", head)], med[key("plain", head)]
	one := peerPoint{1, 1}
	if cd.RPS > 0 {
		b.ReportMetric(sp.RPS/cd.RPS, "rps/caddy@4x16")
		b.ReportMetric(sp.P99us/cd.P99us, "p99/caddy@4x16")
		b.ReportMetric(med[key("spooky", one)].RPS/med[key("caddy", one)].RPS, "rps/caddy@1")
	}
	b.ReportMetric(sp.CPUus/pl.CPUus, "cpu/plain@4x16")
	b.ReportMetric(float64(idleRSS["spooky"])/1e6, "spooky-idle-MB")
	b.ReportMetric(float64(idleAnon["spooky"])/1e6, "spooky-idle-anon-MB")
	if out := os.Getenv(peerOutEnv); out != "" {
		j, _ := json.MarshalIndent(map[string]any{"rounds": rounds, "duration": dur.String(), "figures": figs, "idle_rss": idleRSS, "idle_rss_anon": idleAnon}, "", "  ")
		if err := os.WriteFile(out, j, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// measurePeer runs one point against one server and reads the CPU time
// the server and the upstream spent on it.
func measurePeer(s, upstream *peerProc, p peerPoint, tc *tls.Config, dur time.Duration) (peerFigure, error) {
	lc := loadConfig{URL: "https://bench.spooky.test/", Addr: s.addr, HTTP3: true, TLS: tc, Connections: p.Conns, Streams: p.Streams, Duration: dur}
	var ru0, ru1 unix.Rusage
	s0, err1 := s.cpu()
	u0, err2 := upstream.cpu()
	err3 := unix.Getrusage(unix.RUSAGE_SELF, &ru0)
	if err := errors.Join(err1, err2, err3); err != nil {
		return peerFigure{}, err
	}
	res, err := runLoad(context.Background(), lc)
	if err != nil {
		return peerFigure{}, fmt.Errorf("%s at %d×%d: %w", s.name, p.Conns, p.Streams, err)
	}
	if res.Errors > 0 || res.Requests == 0 {
		return peerFigure{}, fmt.Errorf("%s at %d×%d: %d requests, %d errors", s.name, p.Conns, p.Streams, res.Requests, res.Errors)
	}
	s1, err1 := s.cpu()
	u1, err2 := upstream.cpu()
	err3 = unix.Getrusage(unix.RUSAGE_SELF, &ru1)
	if err := errors.Join(err1, err2, err3); err != nil {
		return peerFigure{}, err
	}
	n := float64(res.Requests)
	f := peerFigure{
		Server: s.name, Streams: p.Streams, Conns: p.Conns, RPS: res.RPS,
		P50us: float64(res.P50.Nanoseconds()) / 1e3, P99us: float64(res.P99.Nanoseconds()) / 1e3,
		CPUus:   float64((s1 - s0).Nanoseconds()) / 1e3 / n,
		LoadCPU: float64(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) / float64(res.Elapsed.Nanoseconds()),
	}
	if s != upstream && s.name != "plain" {
		f.UpstreamCPUus = float64((u1 - u0).Nanoseconds()) / 1e3 / n
	}
	return f, nil
}

// medianFigure takes each figure's median over rounds on its own.
func medianFigure(fs []peerFigure) peerFigure {
	m := fs[0]
	pick := func(get func(peerFigure) float64) float64 {
		v := make([]float64, len(fs))
		for i, f := range fs {
			v[i] = get(f)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	m.RPS = pick(func(f peerFigure) float64 { return f.RPS })
	m.P50us = pick(func(f peerFigure) float64 { return f.P50us })
	m.P99us = pick(func(f peerFigure) float64 { return f.P99us })
	m.CPUus = pick(func(f peerFigure) float64 { return f.CPUus })
	m.UpstreamCPUus = pick(func(f peerFigure) float64 { return f.UpstreamCPUus })
	m.LoadCPU = pick(func(f peerFigure) float64 { return f.LoadCPU })
	return m
}

// startPerf records the process with perf(1) into out (appending a round
// number after the first) until the returned function is called.
func startPerf(tb testing.TB, p *peerProc, out string) func() {
	if _, err := os.Stat(out); err == nil {
		for i := 2; ; i++ {
			if _, err := os.Stat(out + "." + strconv.Itoa(i)); err != nil {
				out += "." + strconv.Itoa(i)
				break
			}
		}
	}
	cmd := exec.Command("perf", "record", "-g", "-o", out, "-p", strconv.Itoa(p.cmd.Process.Pid))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Logf("perf record: %v", err)
		return func() {}
	}
	time.Sleep(200 * time.Millisecond) // perf attaches
	return func() {
		_ = cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil && !strings.Contains(stderr.String(), "Captured and wrote") {
			tb.Logf("perf record: %v\n%s", err, stderr.String())
		}
	}
}
