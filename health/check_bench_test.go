package health

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/config"
)

// benchServerEnv makes TestBenchServerProcess serve instead of returning.
const benchServerEnv = "SPOOKY_HEALTH_BENCH_SERVER"

// TestBenchServerProcess is not a test: run by BenchmarkChecker as a child
// process, it serves TCP and HTTP/3 on loopback, prints their addresses and
// serves until its stdin closes, so that the benchmark's CPU time is the
// checker's alone.
func TestBenchServerProcess(t *testing.T) {
	if os.Getenv(benchServerEnv) != "1" {
		t.Skip("run by BenchmarkChecker as its servers")
	}
	tcp := mustTCPServer(t)
	h3 := mustH3Server(t, mustCert(t, "backend.example.test"), newHandler())
	fmt.Printf("tcp=%s quic=%s\n", tcp.addr, h3.addr)
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// mustBenchServers starts TestBenchServerProcess and returns its addresses.
func mustBenchServers(tb testing.TB) (tcp, quic string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchServerProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), benchServerEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("read the servers' addresses: %v", err)
	}
	if _, err := fmt.Sscanf(strings.TrimSpace(line), "tcp=%s quic=%s", &tcp, &quic); err != nil {
		tb.Fatalf("parse %q: %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return tcp, quic
}

// counter is an Observer that counts probes.
type counter struct{ ok, failed atomic.Int64 }

func (c *counter) ObserveCheck(_ Target, _ string, ok bool, _ time.Duration) {
	if ok {
		c.ok.Add(1)
	} else {
		c.failed.Add(1)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkChecker checks 300 targets every second (jitter 0.1) against
// servers in another process and reports the checker's CPU time per check,
// its share of one core, and the goroutines it keeps. Each iteration is
// one second of running, after the first probe of every target:
//
//	go test -run '^$' -bench Checker -benchtime 10x ./health
func BenchmarkChecker(b *testing.B) {
	const targets = 300
	tcpAddr, quicAddr := mustBenchServers(b)
	for _, tc := range []struct {
		typ  config.CheckType
		addr string
	}{{config.CheckTCP, tcpAddr}, {config.CheckQUIC, quicAddr}, {config.CheckHTTP3, quicAddr}} {
		b.Run(fmt.Sprintf("%s/%d-targets", tc.typ, targets), func(b *testing.B) {
			g0 := runtime.NumGoroutine()
			cnt := &counter{}
			c := NewChecker(NewRegistry(nil), CheckerOptions{Observer: cnt})
			defer c.Close()
			probes := make([]Probe, targets)
			for i := range probes {
				probes[i] = Probe{Target: Backend("bench", fmt.Sprint(i)), Type: tc.typ, Addr: tc.addr,
					Interval: time.Second, Jitter: 0.1, Timeout: time.Second}
			}
			c.Set(probes)
			// Every target's first probe comes within the first interval.
			waitFor(b, "every target has been probed", func() bool { return cnt.ok.Load()+cnt.failed.Load() >= targets })

			var maxG atomic.Int64
			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() {
				t := time.NewTicker(50 * time.Millisecond)
				defer t.Stop()
				for {
					maxG.Store(max(maxG.Load(), int64(runtime.NumGoroutine()-g0)))
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
				}
			})
			ok0, failed0, cpu0, start := cnt.ok.Load(), cnt.failed.Load(), cpuTime(), time.Now()
			b.ResetTimer()
			time.Sleep(time.Duration(b.N) * time.Second) // the measurement window, not a wait for readiness
			b.StopTimer()
			cpu, wall := cpuTime()-cpu0, time.Since(start)
			stop()
			wg.Wait()
			checks, failed := cnt.ok.Load()-ok0, cnt.failed.Load()-failed0
			checks += failed
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(checks)/wall.Seconds(), "checks/s")
			// Failures are timeouts of a server starved of CPU (one process
			// answers all 300 targets); a run with any is not a clean figure.
			b.ReportMetric(float64(failed), "failed")
			b.ReportMetric(float64(cpu.Microseconds())/float64(max(checks, 1)), "cpu-µs/check")
			b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "%cpu")
			b.ReportMetric(float64(maxG.Load()), "goroutines")
		})
	}
}

// BenchmarkProbe runs one probe after another against in-process servers:
// the latency and allocations of one probe, server side included.
func BenchmarkProbe(b *testing.B) {
	tcp := mustTCPServer(b)
	h := newHandler()
	h3 := mustH3Server(b, mustCert(b, "backend.example.test"), h)
	httpAddr := mustHTTPServer(b, h, "http", testCert{}).Listener.Addr().String()
	for _, p := range []Probe{
		{Type: config.CheckTCP, Addr: tcp.addr},
		{Type: config.CheckHTTP, Addr: httpAddr},
		{Type: config.CheckQUIC, Addr: h3.addr},
		{Type: config.CheckHTTP3, Addr: h3.addr},
	} {
		b.Run(string(p.Type), func(b *testing.B) {
			p = p.withDefaults()
			pr, err := newProber(p)
			if err != nil {
				b.Fatal(err)
			}
			defer pr.close()
			b.ReportAllocs()
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), p.Timeout)
				o := pr.probe(ctx)
				cancel()
				if !o.ok {
					b.Fatalf("probe failed: %s", o.detail)
				}
			}
		})
	}
}
