package main

import (
	"fmt"
	"net/netip"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/admin"
)

// backendsCommand prints the health and counters of every backend and
// upstream, or of one service's.
func backendsCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "backends",
		Usage:     "print the health and traffic of the backends and upstreams of every service, or of SERVICE",
		ArgsUsage: "[SERVICE]",
		Flags:     adminFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return fmt.Errorf("backends: want at most one argument, SERVICE (got %d)", c.NArg())
			}
			ac, err := dialAdmin(c)
			if err != nil {
				return fmt.Errorf("backends: %w", err)
			}
			defer ac.Close()
			st, err := ac.Backends(c.Context, c.Args().First())
			if err != nil {
				return adminError("backends", err)
			}
			if c.Bool("json") {
				return printJSON(e, st)
			}
			printBackends(e, st)
			return nil
		},
	}
}

func printBackends(e env, st *admin.Status) {
	var header bool
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, s := range st.Services {
		for _, b := range s.Backends {
			if !header {
				fmt.Fprintln(w, "SERVICE\tBACKEND\tADDRESS\tWEIGHT\tSTATE\tSOURCE\tSINCE\tPACKETS\tBYTES\tREASON")
				header = true
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\n", s.Name, b.Name, hostPort(b.Address, b.Port),
				b.Weight, b.State, orDash(b.Source), formatTime(b.Since), b.Packets, b.Bytes, orDash(b.Reason))
		}
	}
	w.Flush()

	var upstreams bool
	for _, p := range st.Pools {
		upstreams = upstreams || len(p.Upstreams) > 0
	}
	if !upstreams {
		return
	}
	if header {
		fmt.Fprintln(e.stdout)
	}
	w = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POOL\tUPSTREAM\tWEIGHT\tSTATE\tSOURCE\tSINCE\tBREAKER\tIN FLIGHT\tREQUESTS\tREASON")
	for _, p := range st.Pools {
		for _, u := range p.Upstreams {
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", p.Name, u.Name, u.Weight, u.State, orDash(u.Source),
				formatTime(u.Since), orDash(u.Breaker), u.InFlight, u.Requests, orDash(u.Reason))
		}
	}
	w.Flush()
}

// hostPort writes addr:port, or addr alone when the port is unknown.
func hostPort(addr netip.Addr, port int) string {
	if port == 0 {
		return addr.String()
	}
	return netip.AddrPortFrom(addr, uint16(port)).String()
}
