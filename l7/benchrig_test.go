package l7

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/sys/unix"
)

// The bench rig splits the benchmark across two processes so that the
// condition the request tier's targets are stated under holds: spooky and
// its upstreams share one core (a child process pinned to one CPU with
// GOMAXPROCS=1), and the load generator runs in the parent on the other
// CPUs, so it neither steals the proxy's core nor is counted in its profile.
//
// The child speaks a line protocol on stdin/stdout; every line it writes
// starts with benchRigPrefix so that other output (a test binary's PASS)
// is skipped.
const (
	benchRigPrefix = "spooky-bench-rig "
	// benchRigDirEnv, when set in a child's environment, names the
	// directory for the rig's certificate; a test binary's rig entry point
	// runs only when it is set.
	benchRigDirEnv = "SPOOKY_L7_BENCH_RIG_DIR"
	// benchRigCPUProfileEnv, when set, makes the rig write a CPU profile of
	// itself (spooky and the upstreams, not the load generator) there.
	benchRigCPUProfileEnv = "SPOOKY_L7_BENCH_RIG_CPUPROFILE"
	// benchRigMemProfileEnv, when set, makes the rig write an allocation
	// profile there when it exits, and a heap profile to the same name plus
	// ".inuse" at each "memory" request (so after IdleConnBytes it shows
	// what idle connections hold).
	benchRigMemProfileEnv = "SPOOKY_L7_BENCH_RIG_MEMPROFILE"
)

// benchRigHello is the child's first line.
type benchRigHello struct {
	benchAddrs
	CertFile   string
	GOMAXPROCS int
}

// serveBenchRig is the child side: it starts a [benchEnv] in dir, reports
// its addresses on out, and answers requests read from in ("usage": CPU
// time used so far in ns; "memory": heap and stack in use after a GC, in
// bytes) until in closes. Profiles are written as the benchRig*ProfileEnv
// variables ask.
func serveBenchRig(dir string, in io.Reader, out io.Writer) error {
	if p := os.Getenv(benchRigCPUProfileEnv); p != "" {
		f, err := os.Create(p)
		if err != nil {
			return fmt.Errorf("bench rig: cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("bench rig: cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if p := os.Getenv(benchRigMemProfileEnv); p != "" {
		defer func() {
			if f, err := os.Create(p); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				f.Close()
			}
		}()
	}
	e, err := newBenchEnv(dir)
	if err != nil {
		return fmt.Errorf("bench rig: %w", err)
	}
	defer e.Close()
	hello, err := json.Marshal(benchRigHello{benchAddrs: e.benchAddrs, CertFile: e.CertFile, GOMAXPROCS: runtime.GOMAXPROCS(0)})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%sready %s\n", benchRigPrefix, hello)
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		switch cmd := strings.TrimSpace(sc.Text()); cmd {
		case "usage":
			var ru unix.Rusage
			if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
				return fmt.Errorf("bench rig: getrusage: %w", err)
			}
			ns := ru.Utime.Nano() + ru.Stime.Nano()
			fmt.Fprintf(out, "%susage %d\n", benchRigPrefix, ns)
		case "memory":
			runtime.GC()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if p := os.Getenv(benchRigMemProfileEnv); p != "" {
				// What is live now, e.g. with idle connections open.
				if f, err := os.Create(p + ".inuse"); err == nil {
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			}
			fmt.Fprintf(out, "%smemory %d\n", benchRigPrefix, ms.HeapInuse+ms.StackInuse)
		default:
			fmt.Fprintf(out, "%serror unknown command %q\n", benchRigPrefix, cmd)
		}
	}
	return sc.Err()
}

// benchRig is the parent side: a running rig child and what it reported.
type benchRig struct {
	benchAddrs
	// RigCPUs are the CPUs the child (spooky and upstreams) is pinned to;
	// LoadCPUs those left for the load generator. On a one-CPU machine
	// they are the same CPU.
	RigCPUs, LoadCPUs []int
	// GOMAXPROCS is the child's.
	GOMAXPROCS int

	cmd  *exec.Cmd
	in   io.WriteCloser
	mu   sync.Mutex
	out  *bufio.Scanner
	done chan error
}

// startBenchRig starts cmd, which must run [serveBenchRig] with
// benchRigDirEnv set (the caller sets it), pinned to the last CPU this
// process may use and with GOMAXPROCS=1.
func startBenchRig(cmd *exec.Cmd) (*benchRig, error) {
	cpus, err := allowedCPUs()
	if err != nil {
		return nil, fmt.Errorf("bench rig: %w", err)
	}
	r := &benchRig{RigCPUs: cpus[len(cpus)-1:], LoadCPUs: cpus[:len(cpus)-1], cmd: cmd, done: make(chan error, 1)}
	if len(r.LoadCPUs) == 0 {
		r.LoadCPUs = r.RigCPUs
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, "GOMAXPROCS=1")
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr // quic-go's UDP buffer warnings, panics
	}
	if r.in, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("bench rig: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench rig: %w", err)
	}
	r.out = bufio.NewScanner(stdout)
	if err := startPinned(cmd.Start, r.RigCPUs); err != nil {
		return nil, fmt.Errorf("bench rig: start %s: %w", cmd.Path, err)
	}
	line, err := r.read("ready")
	if err != nil {
		r.Close()
		return nil, err
	}
	var h benchRigHello
	if err := json.Unmarshal([]byte(line), &h); err != nil {
		r.Close()
		return nil, fmt.Errorf("bench rig: bad hello %q: %w", line, err)
	}
	pem, err := os.ReadFile(h.CertFile)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("bench rig: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	r.benchAddrs = h.benchAddrs
	r.TLS = &tls.Config{RootCAs: roots, ServerName: "bench.spooky.test"}
	r.GOMAXPROCS = h.GOMAXPROCS
	return r, nil
}

// read returns the payload of the child's next line of the given kind.
func (r *benchRig) read(kind string) (string, error) {
	for r.out.Scan() {
		rest, ok := strings.CutPrefix(r.out.Text(), benchRigPrefix)
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(rest, " ")
		if k == "error" {
			return "", fmt.Errorf("bench rig: %s", v)
		}
		if k == kind {
			return v, nil
		}
	}
	if err := r.out.Err(); err != nil {
		return "", fmt.Errorf("bench rig: read: %w", err)
	}
	return "", fmt.Errorf("bench rig: exited before answering %q", kind)
}

func (r *benchRig) ask(cmd string) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := io.WriteString(r.in, cmd+"\n"); err != nil {
		return 0, fmt.Errorf("bench rig: %w", err)
	}
	v, err := r.read(cmd)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

// CPUTime is the CPU time (user + system) the rig has used so far.
func (r *benchRig) CPUTime() (time.Duration, error) {
	ns, err := r.ask("usage")
	return time.Duration(ns), err
}

// Memory is the rig's heap and stack in use after a GC, in bytes.
func (r *benchRig) Memory() (int64, error) { return r.ask("memory") }

// ThreadCPUs returns the distinct CPU lists the rig's threads may run on.
func (r *benchRig) ThreadCPUs() ([]string, error) { return threadCPUs(r.cmd.Process.Pid) }

// PinLoadGenerator confines this process to LoadCPUs until the returned
// function is called.
func (r *benchRig) PinLoadGenerator() (restore func() error, err error) {
	return pinProcess(r.LoadCPUs)
}

// benchResult is a load run's figures plus the CPU the rig spent on it.
type benchResult struct {
	loadResult
	RigCPU time.Duration
}

// CPUPerRequest is the rig's CPU time per request.
func (b benchResult) CPUPerRequest() time.Duration {
	if b.Requests == 0 {
		return 0
	}
	return b.RigCPU / time.Duration(b.Requests)
}

// Utilisation is the rig's CPU time over the run's wall time (1 = one core busy).
func (b benchResult) Utilisation() float64 {
	if b.Elapsed <= 0 {
		return 0
	}
	return b.RigCPU.Seconds() / b.Elapsed.Seconds()
}

// Measure runs lc and the rig's CPU time across it.
func (r *benchRig) Measure(ctx context.Context, lc loadConfig) (benchResult, error) {
	return measureLoad(ctx, lc, r.CPUTime)
}

// measureLoad is runLoad bracketed by a CPU clock. The warm-up requests
// fall inside the bracket; with thousands of requests per run they are noise.
func measureLoad(ctx context.Context, lc loadConfig, cpu func() (time.Duration, error)) (benchResult, error) {
	c0, err := cpu()
	if err != nil {
		return benchResult{}, err
	}
	res, err := runLoad(ctx, lc)
	if err != nil {
		return benchResult{}, err
	}
	c1, err := cpu()
	if err != nil {
		return benchResult{}, err
	}
	return benchResult{loadResult: res, RigCPU: c1 - c0}, nil
}

// IdleConnBytes opens n HTTP/3 connections to spooky, each after one
// request, and returns the growth of the rig's heap and stacks per
// connection: spooky's side only, since the clients live in this process.
func (r *benchRig) IdleConnBytes(ctx context.Context, n int) (float64, error) {
	before, err := r.Memory()
	if err != nil {
		return 0, err
	}
	var trs []*http3.Transport
	defer func() {
		for _, tr := range trs {
			_ = tr.Close()
		}
	}()
	for range n {
		tr := &http3.Transport{TLSClientConfig: r.TLS, Dial: func(ctx context.Context, _ string, tc *tls.Config, qc *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, r.SpookyAddr, tc, qc)
		}}
		trs = append(trs, tr)
		if err := loadOnce(ctx, &http.Client{Transport: tr}, "https://bench.spooky.test/h1"); err != nil {
			return 0, err
		}
	}
	after, err := r.Memory()
	if err != nil {
		return 0, err
	}
	return float64(after-before) / float64(n), nil
}

// Close ends the child (closing its stdin) and waits for it.
func (r *benchRig) Close() error {
	_ = r.in.Close()
	go func() { r.done <- r.cmd.Wait() }()
	select {
	case err := <-r.done:
		return err
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		return errors.Join(errors.New("bench rig: did not exit; killed"), <-r.done)
	}
}
