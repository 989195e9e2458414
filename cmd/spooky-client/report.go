package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"text/tabwriter"
	"time"
)

// report sums up a run; its JSON form is what --json prints.
type report struct {
	URL         string `json:"url"`
	Connections int    `json:"connections"`
	Requests    int    `json:"requests"`
	OK          int    `json:"ok"`
	Failed      int    `json:"failed"`
	// Seconds is the wall time of the whole run.
	Seconds float64 `json:"seconds"`
	// Backends counts successful responses by X-Backend.
	Backends map[string]int `json:"backends"`
	// ConnBackends counts connections by the backend of their first
	// successful response.
	ConnBackends map[string]int `json:"connection_backends"`
	// SwitchedConns counts connections answered by more than one backend:
	// through a load balancer, a connection must stay on its backend, so
	// anything but 0 is a bug (or a failover).
	SwitchedConns int            `json:"switched_connections"`
	Latency       latencyReport  `json:"latency_ms"`
	Errors        map[string]int `json:"errors,omitempty"`

	latencies []time.Duration
	perConn   []map[string]bool
}

// latencyReport holds request latencies in milliseconds (nearest-rank
// percentiles), handshake included for a connection's first request.
type latencyReport struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func newReport(url string, conns int) *report {
	r := &report{
		URL: url, Connections: conns,
		Backends: map[string]int{}, ConnBackends: map[string]int{}, Errors: map[string]int{},
		perConn: make([]map[string]bool, conns),
	}
	for i := range r.perConn {
		r.perConn[i] = map[string]bool{}
	}
	return r
}

func (r *report) add(res result) {
	r.Requests++
	if res.err != nil {
		r.Failed++
		r.Errors[res.err.Error()]++
		return
	}
	r.OK++
	r.Backends[res.backend]++
	r.latencies = append(r.latencies, res.latency)
	seen := r.perConn[res.conn]
	if len(seen) == 0 {
		r.ConnBackends[res.backend]++
	}
	seen[res.backend] = true
}

func (r *report) finish(elapsed time.Duration) {
	r.Seconds = elapsed.Seconds()
	for _, seen := range r.perConn {
		if len(seen) > 1 {
			r.SwitchedConns++
		}
	}
	slices.Sort(r.latencies)
	r.Latency = latencyReport{
		P50: ms(percentile(r.latencies, 0.50)),
		P99: ms(percentile(r.latencies, 0.99)),
		Max: ms(percentile(r.latencies, 1)),
	}
}

// percentile returns the nearest-rank p-th percentile of sorted, 0 if empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// write prints the report as a table, or as JSON.
func (r *report) write(w io.Writer, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "GET %s: %d requests over %d connections in %.3fs: %d ok, %d failed\n",
		r.URL, r.Requests, r.Connections, r.Seconds, r.OK, r.Failed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "backend\tresponses\tconnections")
	for _, b := range sortedKeys(r.Backends) {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", b, r.Backends[b], r.ConnBackends[b])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "latency: p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", r.Latency.P50, r.Latency.P99, r.Latency.Max)
	if r.SwitchedConns > 0 {
		fmt.Fprintf(w, "connections answered by more than one backend: %d\n", r.SwitchedConns)
	}
	for _, e := range sortedKeys(r.Errors) {
		fmt.Fprintf(w, "error (%d×): %s\n", r.Errors[e], e)
	}
	return nil
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
