package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/forwarder"
)

// pinRootFlag is shared by the commands that find pinned state.
var pinRootFlag = &cli.StringFlag{
	Name:  "pin-root",
	Value: forwarder.DefaultPinRoot,
	Usage: "bpffs `DIR` holding one directory of pins per interface",
}

func xdpModeFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "xdp-mode", Value: string(forwarder.XDPNative), Usage: "native or generic"}
}

// attachCommand runs the XDP fast path on an interface until SIGTERM.
func attachCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "attach the XDP load balancer to IFACE and keep its maps equal to the config (SIGHUP reloads)",
		ArgsUsage: "IFACE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: config.DefaultPath, Usage: "configuration `FILE`"},
			xdpModeFlag(),
			&cli.StringFlag{Name: "dataplane", Value: string(forwarder.DataplaneXDP),
				Usage: "xdp (decide in XDP; Go decrypts encrypted CIDs XDP cannot) or userspace (every datagram of the l4 services decided in Go over AF_XDP)"},
			pinRootFlag,
			watchFlag(),
		},
		Action: func(c *cli.Context) error {
			iface, err := ifaceArg(c, "attach")
			if err != nil {
				return err
			}
			mode := forwarder.XDPMode(c.String("xdp-mode"))
			if mode != forwarder.XDPNative && mode != forwarder.XDPGeneric {
				return fmt.Errorf("attach: --xdp-mode %q: want native or generic", mode)
			}
			dataplane := forwarder.Dataplane(c.String("dataplane"))
			if dataplane != forwarder.DataplaneXDP && dataplane != forwarder.DataplaneUserspace {
				return fmt.Errorf("attach: --dataplane %q: want xdp or userspace", dataplane)
			}
			path := c.String("config")
			cfg, err := loadConfig(e, path)
			if err != nil {
				return fmt.Errorf("attach: %w", err)
			}
			log, level := newLogger(e.stderr, cfg.Log)
			d, err := newDaemon(c.Context, daemonOptions{
				path: path, iface: iface, xdpMode: mode, pinRoot: c.String("pin-root"), logLevel: level, dataplane: dataplane,
				watch: c.Duration("watch"),
			}, cfg, log)
			if err != nil {
				return fmt.Errorf("attach: %w", err)
			}
			if err := d.run(c.Context); err != nil {
				return fmt.Errorf("attach: %w", err)
			}
			return nil
		},
	}
}
