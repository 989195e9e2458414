package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/forwarder"
)

// detachCommand removes the XDP program and every pin of an interface.
func detachCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "detach",
		Usage:     "remove the XDP load balancer from IFACE with its pinned maps (flows and counters are lost)",
		ArgsUsage: "IFACE",
		Flags:     []cli.Flag{pinRootFlag},
		Action: func(c *cli.Context) error {
			iface, err := oneArg(c, "detach", "IFACE")
			if err != nil {
				return err
			}
			if err := forwarder.Detach(c.String("pin-root"), iface); err != nil {
				return fmt.Errorf("detach: %w", err)
			}
			fmt.Fprintf(e.stdout, "detached from %s\n", iface)
			return nil
		},
	}
}
