package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/health"
)

// statusCommand prints what a running daemon serves: its configuration,
// services and pools, with how many of their targets are healthy.
func statusCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "print the running daemon's configuration, services and pools",
		ArgsUsage: " ",
		Flags:     adminFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, "status"); err != nil {
				return err
			}
			ac, err := dialAdmin(c)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			defer ac.Close()
			st, err := ac.Status(c.Context)
			if err != nil {
				return adminError("status", err)
			}
			if c.Bool("json") {
				return printJSON(e, st)
			}
			printStatus(e, st)
			return nil
		},
	}
}

func printStatus(e env, st *admin.Status) {
	cfg := st.Config
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "config\t%s\n", cfg.Path)
	fmt.Fprintf(w, "sha256\t%s\n", cfg.SHA256)
	fmt.Fprintf(w, "loaded\t%s\n", formatTime(cfg.LoadedAt))
	if r := cfg.LastReload; r != nil {
		outcome := "ok"
		if !r.OK {
			outcome = "rejected: " + strings.ReplaceAll(r.Error, "\n", "\n\t  ")
		}
		fmt.Fprintf(w, "last reload\t%s %s\n", formatTime(r.At), outcome)
	}
	w.Flush()

	fmt.Fprintln(e.stdout)
	w = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SERVICE\tADDRESS\tMODE\tFORWARDING\tBACKENDS")
	for _, s := range st.Services {
		targets := "pools " + orDash(strings.Join(s.Pools, ", "))
		if s.Mode != config.ModeL7 {
			states := make([]string, len(s.Backends))
			for i, b := range s.Backends {
				states[i] = b.State
			}
			targets = countStates(states)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", s.Name, hostPort(s.Address, s.Port), s.Mode, orDash(string(s.Forwarding)), targets)
	}
	w.Flush()

	printBGP(e, st.BGP)
	if len(st.Pools) == 0 {
		return
	}
	fmt.Fprintln(e.stdout)
	w = tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "POOL\tPOLICY\tUPSTREAMS")
	for _, p := range st.Pools {
		states := make([]string, len(p.Upstreams))
		for i, u := range p.Upstreams {
			states[i] = u.State
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", p.Name, p.Policy, countStates(states))
	}
	w.Flush()
}

// countStates reads like "2/3 healthy, 1 draining".
func countStates(states []string) string {
	n := map[string]int{}
	for _, s := range states {
		n[s]++
	}
	out := fmt.Sprintf("%d/%d healthy", n[health.Healthy.String()], len(states))
	for _, s := range []string{health.Draining.String(), health.Unhealthy.String()} {
		if n[s] > 0 {
			out += fmt.Sprintf(", %d %s", n[s], s)
		}
	}
	return out
}

// printJSON writes v as indented JSON.
func printJSON(e env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
