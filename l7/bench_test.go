package l7

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
)

// TestBenchRigChild is the bench rig's child process: the benchmarks run
// this test binary again with benchRigDirEnv set, and this entry point
// serves the rig until its stdin closes.
func TestBenchRigChild(t *testing.T) {
	dir := os.Getenv(benchRigDirEnv)
	if dir == "" {
		t.Skip("runs only as the bench rig's child process (" + benchRigDirEnv + " unset)")
	}
	if err := serveBenchRig(dir, os.Stdin, os.Stdout); err != nil {
		t.Fatal(err)
	}
}

// mustBenchRig starts the rig in a child process (this test binary again),
// spooky and upstreams pinned to one CPU, and pins this process, the load
// generator, to the others until the test ends.
func mustBenchRig(tb testing.TB) *benchRig {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchRigChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), benchRigDirEnv+"="+tb.TempDir())
	r, err := startBenchRig(cmd)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("close bench rig: %v", err)
		}
	})
	restore, err := r.PinLoadGenerator()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := restore(); err != nil {
			tb.Errorf("unpin load generator: %v", err)
		}
	})
	return r
}

func TestBenchRigPinsSpookyAndUpstreamsToOneCore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process and sends load")
	}
	r := mustBenchRig(t)
	if r.GOMAXPROCS != 1 {
		t.Errorf("rig GOMAXPROCS = %d, want 1", r.GOMAXPROCS)
	}
	if len(r.RigCPUs) != 1 {
		t.Fatalf("rig CPUs = %v, want one", r.RigCPUs)
	}
	for _, target := range []benchTarget{directH3, spookyH3, directH1, spookyH1} {
		t.Run(string(target)+" answers 1 KiB under load", func(t *testing.T) {
			lc := r.Load(target)
			lc.Connections, lc.Streams, lc.Requests = 2, 4, 200
			res, err := r.Measure(context.Background(), lc)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 200 || res.Errors != 0 {
				t.Fatalf("%d requests, %d errors; want 200 and 0", res.Requests, res.Errors)
			}
			if res.RigCPU <= 0 {
				t.Errorf("rig CPU time %v, want > 0", res.RigCPU)
			}
		})
	}
	// Checked after load, when the child runs all the threads it will.
	lists, err := r.ThreadCPUs()
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(r.RigCPUs[0]); !slices.Equal(lists, []string{want}) {
		t.Errorf("rig threads may run on %v, want only CPU %s", lists, want)
	}
	per, err := r.IdleConnBytes(context.Background(), 20)
	if err != nil {
		t.Fatal(err)
	}
	if per <= 0 {
		t.Errorf("memory per idle connection %.0f B, want > 0", per)
	}
}

// BenchmarkProxy compares spooky's HTTP/3 tier with the same load
// generator talking straight to the upstream in its own protocol, at 1
// stream and at 64 (4 connections × 16 streams), 1 KiB responses. Spooky
// and the upstreams run in a child process pinned to one CPU with
// GOMAXPROCS=1; the load generator runs here on the other CPUs. b.N is the
// number of requests. Besides req/s and latency it reports the rig's CPU
// time per request and, for spooky, the ratios to direct the issue's
// targets are stated in. Profile the rig (not the load generator) with
// SPOOKY_L7_BENCH_RIG_CPUPROFILE / SPOOKY_L7_BENCH_RIG_MEMPROFILE
// (benchRigCPUProfileEnv, benchRigMemProfileEnv) set to file names.
func BenchmarkProxy(b *testing.B) {
	r := mustBenchRig(b)
	direct := map[string]benchResult{}
	for _, shape := range []struct {
		name           string
		conns, streams int
	}{{"streams=1", 1, 1}, {"streams=64", 4, 16}} {
		for _, pair := range [][2]benchTarget{{directH3, spookyH3}, {directH1, spookyH1}} {
			for i, t := range pair {
				b.Run(shape.name+"/"+string(t), func(b *testing.B) {
					lc := r.Load(t)
					lc.Connections, lc.Streams, lc.Requests = shape.conns, shape.streams, max(b.N, 4*shape.conns*shape.streams)
					b.ResetTimer()
					res, err := r.Measure(context.Background(), lc)
					if err != nil {
						b.Fatal(err)
					}
					if res.Errors > 0 {
						b.Fatalf("%d errors", res.Errors)
					}
					b.ReportMetric(res.RPS, "req/s")
					b.ReportMetric(float64(res.P50.Microseconds()), "p50-µs")
					b.ReportMetric(float64(res.P99.Microseconds()), "p99-µs")
					b.ReportMetric(float64(res.CPUPerRequest().Nanoseconds())/1e3, "rig-cpu-µs/req")
					b.ReportMetric(res.Utilisation()*100, "rig-cpu-%")
					key := shape.name + string(pair[0])
					if i == 0 {
						direct[key] = res
					} else if d := direct[key]; d.RPS > 0 && d.P99 > 0 {
						b.ReportMetric(res.RPS/d.RPS, "rps/direct")
						b.ReportMetric(float64(res.P99)/float64(d.P99), "p99/direct")
						// The rig's CPU per request through spooky over that
						// of direct: less noisy than req/s on a shared machine,
						// and its inverse is the req/s ratio when both runs
						// keep the rig's core busy.
						if d.CPUPerRequest() > 0 {
							b.ReportMetric(float64(res.CPUPerRequest())/float64(d.CPUPerRequest()), "cpu/direct")
						}
					}
				})
			}
		}
	}
}

// BenchmarkIdleConnectionMemory reports spooky's heap and stack bytes per
// idle HTTP/3 connection (the rig's side only; clients are in this process).
func BenchmarkIdleConnectionMemory(b *testing.B) {
	r := mustBenchRig(b)
	per, err := r.IdleConnBytes(context.Background(), min(max(b.N, 50), 500))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(per, "B/conn")
}
