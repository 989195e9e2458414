package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spooky-lb/spooky/admin"
)

// printBGP prints the BGP sessions and the routes announced over them;
// nothing without a bgp section.
func printBGP(e env, b *admin.BGPStatus) {
	if b == nil {
		return
	}
	fmt.Fprintln(e.stdout)
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "BGP PEER\tASN\tSTATE\tSINCE\tHOLD\tROUTES SENT\n")
	for _, p := range b.Peers {
		hold := "-"
		if p.HoldTimeSeconds > 0 {
			hold = strconv.Itoa(p.HoldTimeSeconds) + "s"
		}
		since := "-"
		if !p.Since.IsZero() {
			since = formatTime(p.Since)
		}
		state := p.State
		if p.LastError != "" && p.State != "established" {
			state += " (" + p.LastError + ")"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%d\n", p.Address, p.ASN, state, since, hold, p.Advertised)
	}
	w.Flush()
	fmt.Fprintln(e.stdout)
	w = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "BGP ROUTE\tNEXT HOP\tCOMMUNITIES\tMED\n")
	for _, r := range b.Routes {
		nh := "self"
		if r.NextHop.IsValid() {
			nh = r.NextHop.String()
		}
		med := "-"
		if r.MED != nil {
			med = strconv.FormatUint(uint64(*r.MED), 10)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Prefix, nh, orDash(strings.Join(r.Communities, " ")), med)
	}
	w.Flush()
	switch {
	case b.Withdrawn:
		fmt.Fprintln(e.stdout, "every route is withdrawn by spooky drain --all (spooky undrain --all announces them again)")
	case len(b.Routes) == 0:
		fmt.Fprintln(e.stdout, "no route announced: no VIP has a healthy backend or upstream")
	}
}
