package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/forwarder"
)

// statsCommand prints the XDP counters of an interface from its pinned
// maps, or with --proxy the userspace proxy's counters from the daemon.
func statsCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "print the XDP counters of IFACE (per VIP, per backend, per reason), or with --proxy the userspace proxy's",
		ArgsUsage: "IFACE",
		Flags: append(adminFlags(),
			pinRootFlag,
			&cli.BoolFlag{Name: "proxy", Usage: "print the running daemon's userspace proxy counters (forwarding: proxy) instead; takes no IFACE"},
		),
		Action: func(c *cli.Context) error {
			if c.Bool("proxy") {
				return proxyStats(e, c)
			}
			iface, err := ifaceArg(c, "stats")
			if err != nil {
				return err
			}
			st, err := forwarder.ReadStats(c.String("pin-root"), iface)
			if err != nil {
				return fmt.Errorf("stats: %w", err)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			printStats(e, st)
			return nil
		},
	}
}

func printStats(e env, st *forwarder.Stats) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "SERVICE\tVIP\tMODE\tPACKETS\tBYTES\tBY CID\tBY CID CACHE\tBY FLOW\tBY MAGLEV\t")
	for _, v := range st.VIPs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", orDash(v.Service), v.Address, v.Mode, v.Packets, v.Bytes, v.CID, v.CIDCache, v.Flow, v.Maglev)
	}
	printSlowPath(w, st)
	fmt.Fprintln(w, "\t\t\t\t\t\t\t\t\t")
	fmt.Fprintln(w, "BACKEND\tINDEX\tADDRESS\tSTATE\tPACKETS\tBYTES\t")
	for _, b := range st.Backends {
		addr := "-"
		if b.Address.IsValid() {
			addr = b.Address.String()
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%d\t%d\t\n", orDash(b.Name), b.Index, addr, b.State, b.Packets, b.Bytes)
	}
	fmt.Fprintln(w, "\t\t\t\t\t\t")
	fmt.Fprintln(w, "REASON\tPACKETS\t")
	for r := 0; r < bpf.NumReasons; r++ {
		name := bpf.Reason(r).String()
		fmt.Fprintf(w, "%s\t%d\t\n", name, st.Reasons[name])
	}
	printSlowPathReasons(w, st)
	w.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printSlowPath adds the slow path of the l4 VIPs (encrypted CIDs, or the
// userspace dataplane): what XDP handed to Go, what it held back over the
// limit, what Go did, and the CID cache.
func printSlowPath(w *tabwriter.Writer, st *forwarder.Stats) {
	fmt.Fprintln(w, "\t\t\t\t\t\t\t\t\t")
	fmt.Fprintln(w, "SERVICE\tSLOW PATH\tLIMITED\tBY CID\tBY GO CACHE\tBY FLOW\tBY MAGLEV\tNOT SENT\tCACHE SIZE\tHIT RATIO\t")
	for _, v := range st.VIPs {
		if v.Mode != "l4" {
			continue
		}
		s := v.SlowPath
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.3f\t\n", orDash(v.Service), s.Redirected, s.Limited,
			s.CID, s.CIDCache, s.Flow, s.Maglev, s.NotForwarded, s.CacheEntries, s.HitRatio)
	}
}

// printSlowPathReasons adds what Go decided for the datagrams XDP handed
// it, by reason, when it decided any.
func printSlowPathReasons(w *tabwriter.Writer, st *forwarder.Stats) {
	var any bool
	for _, n := range st.SlowPathReasons {
		any = any || n > 0
	}
	if !any {
		return
	}
	fmt.Fprintln(w, "\t\t")
	fmt.Fprintln(w, "REASON IN GO (SLOW PATH)\tPACKETS\t")
	for r := 0; r < bpf.NumReasons; r++ {
		name := bpf.Reason(r).String()
		fmt.Fprintf(w, "%s\t%d\t\n", name, st.SlowPathReasons[name])
	}
}
