package l7

import (
	"context"
	"os"
	"testing"
	"time"
)

func mustBenchEnv(tb testing.TB) *BenchEnv {
	tb.Helper()
	e, err := NewBenchEnv(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Close)
	return e
}

// BenchmarkProxy compares spooky's HTTP/3 tier with going straight to the
// same upstream, at 1 stream and at 64 (4 connections × 16 streams), 1 KiB
// responses. b.N is the number of requests.
func BenchmarkProxy(b *testing.B) {
	e := mustBenchEnv(b)
	for _, shape := range []struct {
		name           string
		conns, streams int
	}{{"streams=1", 1, 1}, {"streams=64", 4, 16}} {
		for _, t := range []BenchTarget{DirectH3, SpookyH3, DirectH1, SpookyH1} {
			b.Run(shape.name+"/"+string(t), func(b *testing.B) {
				lc := e.Load(t)
				lc.Connections, lc.Streams, lc.Requests = shape.conns, shape.streams, max(b.N, shape.conns*shape.streams)
				b.ResetTimer()
				r, err := RunLoad(context.Background(), lc)
				if err != nil {
					b.Fatal(err)
				}
				if r.Errors > 0 {
					b.Fatalf("%d errors", r.Errors)
				}
				b.ReportMetric(r.RPS, "req/s")
				b.ReportMetric(float64(r.P50.Microseconds()), "p50-µs")
				b.ReportMetric(float64(r.P99.Microseconds()), "p99-µs")
			})
		}
	}
}

// BenchmarkIdleConnectionMemory reports heap bytes per idle HTTP/3
// connection to spooky (client and server ends together).
func BenchmarkIdleConnectionMemory(b *testing.B) {
	e := mustBenchEnv(b)
	per, err := e.IdleConnBytes(context.Background(), min(max(b.N, 50), 500))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(per, "B/conn")
}

func TestBenchHarnessRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("runs load for a few seconds")
	}
	if err := RunBench(context.Background(), os.Stdout, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
