package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/forwarder"
)

// detachCommand removes the XDP program and every pin of an interface.
func detachCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "detach",
		Usage:     "remove the XDP load balancer from IFACE with its pinned maps (flows and counters are lost) and its probe rules and routes",
		ArgsUsage: "IFACE",
		Flags:     []cli.Flag{pinRootFlag},
		Action: func(c *cli.Context) error {
			iface, err := ifaceArg(c, "detach")
			if err != nil {
				return err
			}
			// Probe rules and routes are kernel state that outlives a
			// daemon killed before its Close; they go in any case.
			probeErr := forwarder.RemoveProbeSteering(iface)
			d, err := forwarder.Detach(c.String("pin-root"), iface)
			return reportDetached(e, "detach", d, errors.Join(err, probeErr))
		},
	}
}

// reportDetached prints what a detach did, even if it then failed (a
// program stayed attached), and returns its error.
func reportDetached(e env, cmd string, d *forwarder.Detached, err error) error {
	if d != nil {
		fmt.Fprint(e.stdout, d)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}
