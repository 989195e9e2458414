package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/forwarder"
)

// passCommand manages the no-op XDP program a veth peer needs.
func passCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "xdp-pass",
		Usage: "attach a pass-everything XDP program to the peer of a veth that spooky runs on (veth XDP_TX needs one)",
		Subcommands: []*cli.Command{
			{
				Name:      "attach",
				Usage:     "attach and pin it on IFACE",
				ArgsUsage: "IFACE",
				Flags:     []cli.Flag{pinRootFlag},
				Action: func(c *cli.Context) error {
					iface, err := ifaceArg(c, "xdp-pass attach")
					if err != nil {
						return err
					}
					if err := forwarder.AttachPass(c.String("pin-root"), iface); err != nil {
						return fmt.Errorf("xdp-pass attach: %w", err)
					}
					fmt.Fprintf(e.stdout, "xdp-pass attached to %s\n", iface)
					return nil
				},
			},
			{
				Name:      "detach",
				Usage:     "remove it from IFACE",
				ArgsUsage: "IFACE",
				Flags:     []cli.Flag{pinRootFlag},
				Action: func(c *cli.Context) error {
					iface, err := ifaceArg(c, "xdp-pass detach")
					if err != nil {
						return err
					}
					d, err := forwarder.DetachPass(c.String("pin-root"), iface)
					return reportDetached(e, "xdp-pass detach", d, err)
				},
			},
		},
	}
}
