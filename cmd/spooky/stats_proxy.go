package main

import (
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/bpf"
	"github.com/spooky-lb/spooky/forwarder"
)

// proxyStats prints the userspace proxy's counters, which live in the
// daemon (there are no pinned maps), read through the admin API.
func proxyStats(e env, c *cli.Context) error {
	if err := noArgs(c, "stats --proxy"); err != nil {
		return err
	}
	ac, err := dialAdmin(c)
	if err != nil {
		return fmt.Errorf("stats: %w", err)
	}
	defer ac.Close()
	st, err := ac.Status(c.Context)
	if err != nil {
		return adminError("stats", err)
	}
	if st.Proxy == nil {
		return fmt.Errorf("stats: the daemon serves no service with forwarding: proxy")
	}
	if c.Bool("json") {
		return printJSON(e, st.Proxy)
	}
	printProxyStats(e, st.Proxy)
	return nil
}

func printProxyStats(e env, st *forwarder.ProxyStats) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "SERVICE\tVIP\tSOCKETS\tGRO\tLOCAL ROUTE\t")
	for _, s := range st.Services {
		fmt.Fprintf(w, "%s\t%s\t%d\t%v\t%v\t\n", s.Service, s.VIP, s.Sockets, s.GRO, s.LocalRoute)
	}
	fmt.Fprintln(w, "\t\t\t\t\t")
	fmt.Fprintln(w, "BACKEND\tADDRESS\tSESSIONS\tPACKETS\tBYTES\tREPLIES\tREPLY BYTES\t")
	for _, b := range st.Backends {
		fmt.Fprintf(w, "%s/%s\t%s\t%d\t%d\t%d\t%d\t%d\t\n", b.Service, b.Name, b.Address, b.Sessions, b.Packets, b.Bytes, b.Replies, b.ReplyBytes)
	}
	fmt.Fprintln(w, "\t\t\t\t\t\t\t")
	fmt.Fprintf(w, "SESSIONS\t%d of %d\t\n", st.Sessions, st.MaxSessions)
	fmt.Fprintln(w, "\t\t")
	fmt.Fprintln(w, "EVENT\tDATAGRAMS\t")
	for _, ev := range forwarder.ProxyEvents() {
		fmt.Fprintf(w, "%s\t%d\t\n", ev, st.Events[ev.String()])
	}
	fmt.Fprintln(w, "\t\t")
	fmt.Fprintln(w, "REASON\tDATAGRAMS\t")
	names := make([]string, 0, bpf.NumReasons)
	for r := 0; r < bpf.NumReasons; r++ {
		names = append(names, bpf.Reason(r).String())
	}
	for _, n := range slices.Compact(names) {
		fmt.Fprintf(w, "%s\t%d\t\n", n, st.Reasons[n])
	}
	w.Flush()
}
