package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/health"
)

const targetUsage = "TARGET is service/backend for an l4 backend, or an l7 upstream's URL as the config writes it"

// drainCommand drains a backend or upstream: it takes no new connections
// or requests and keeps the ones it has.
func drainCommand(e env) *cli.Command {
	return &cli.Command{
		Name:        "drain",
		Usage:       "send no new connections to TARGET and keep the ones it has; --wait until they are gone",
		Description: targetUsage + ". A passing health check does not undo a drain; spooky undrain does.",
		ArgsUsage:   "TARGET | --all",
		Flags: append(adminFlags(),
			&cli.BoolFlag{Name: "wait", Usage: "wait until nothing uses TARGET any more; exit 1 if --timeout passes first"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Minute, Usage: "how long --wait waits"},
			&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "how often --wait asks the daemon"},
			allFlag("drain every backend and upstream and withdraw every BGP route (no TARGET): take the host out of service"),
		),
		Action: func(c *cli.Context) error {
			if c.Bool("all") {
				return drainAll(c, e, true)
			}
			target, err := oneArg(c, "drain", "TARGET")
			if err != nil {
				return err
			}
			if c.Duration("interval") <= 0 || c.Duration("timeout") <= 0 {
				return errors.New("drain: --interval and --timeout must be positive")
			}
			ac, err := dialAdmin(c)
			if err != nil {
				return fmt.Errorf("drain: %w", err)
			}
			defer ac.Close()
			p, err := ac.Drain(c.Context, target, true)
			if err != nil {
				return adminError("drain", err)
			}
			if p.Target == "" {
				p.Target = target
			}
			if c.Bool("wait") {
				p, err = waitDrained(c, e, ac, p)
			}
			if c.Bool("json") {
				if jerr := printJSON(e, p); jerr != nil {
					return jerr
				}
			} else if err == nil {
				fmt.Fprintf(e.stdout, "%s: %s\n", target, describeDrain(p))
			}
			return err
		},
	}
}

// waitDrained asks the daemon how the drain goes until nothing uses the
// target, printing each change of what remains. It returns the last
// progress it got, and an error if --timeout passed first.
func waitDrained(c *cli.Context, e env, ac *admin.Client, p *admin.DrainProgress) (*admin.DrainProgress, error) {
	timeout := c.Duration("timeout")
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	tick := time.NewTicker(c.Duration("interval"))
	defer tick.Stop()
	last := int64(-1)
	for !p.Done {
		if p.State != health.Draining.String() {
			return p, fmt.Errorf("drain: %s is %s: its drain was withdrawn while waiting", p.Target, p.State)
		}
		if p.Remaining != last && !c.Bool("json") {
			fmt.Fprintf(e.stdout, "%s: %s\n", p.Target, describeDrain(p))
			last = p.Remaining
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return p, waitError(c.Context, p, timeout)
		}
		next, err := ac.DrainProgress(ctx, p.Target)
		if err != nil {
			if ctx.Err() != nil {
				return p, waitError(c.Context, p, timeout)
			}
			return p, adminError("drain", err)
		}
		p = next
	}
	return p, nil
}

// waitError says why waiting stopped and that the target stays drained.
func waitError(parent context.Context, p *admin.DrainProgress, timeout time.Duration) error {
	why := fmt.Sprintf("still draining after %s", timeout)
	if parent.Err() != nil {
		why = "interrupted while draining"
	}
	detail := ""
	if p.Detail != "" {
		detail = " (" + p.Detail + ")"
	}
	return fmt.Errorf("drain: %s: %s, %s remaining%s; it stays drained (spooky undrain %s takes it back)",
		p.Target, why, p.Remains(), detail, p.Target)
}

// describeDrain reads like "draining, 3 flows remaining" or "drained".
func describeDrain(p *admin.DrainProgress) string {
	switch {
	case p.State != health.Draining.String():
		return p.State
	case p.Done:
		return "drained, nothing remaining"
	}
	s := "draining, " + p.Remains() + " remaining"
	if p.Detail != "" {
		s += " (" + p.Detail + ")"
	}
	return s
}

// undrainCommand withdraws an operator's drain.
func undrainCommand(e env) *cli.Command {
	return &cli.Command{
		Name:        "undrain",
		Usage:       "withdraw a drain of TARGET: it takes new connections again if its health checks pass",
		Description: targetUsage + ".",
		ArgsUsage:   "TARGET",
		Flags:       append(adminFlags(), allFlag("undrain every backend and upstream and announce the BGP routes again (no TARGET)")),
		Action: func(c *cli.Context) error {
			if c.Bool("all") {
				return drainAll(c, e, false)
			}
			target, err := oneArg(c, "undrain", "TARGET")
			if err != nil {
				return err
			}
			ac, err := dialAdmin(c)
			if err != nil {
				return fmt.Errorf("undrain: %w", err)
			}
			defer ac.Close()
			p, err := ac.Drain(c.Context, target, false)
			if err != nil {
				return adminError("undrain", err)
			}
			if c.Bool("json") {
				return printJSON(e, p)
			}
			fmt.Fprintf(e.stdout, "%s: undrained, now %s\n", target, p.State)
			return nil
		},
	}
}
