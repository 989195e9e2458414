package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/config"
)

// serveCommand runs the request tier without XDP.
func serveCommand(e env) *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the HTTP/3 request tier for the config's l7 services, without XDP (SIGHUP reloads, SIGTERM drains)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: config.DefaultPath, Usage: "configuration `FILE`"},
			watchFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("serve: unexpected argument %q", c.Args().First())
			}
			path := c.String("config")
			cfg, err := loadConfig(e, path)
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			log, level := newLogger(e.stderr, cfg.Log)
			d, err := newDaemon(c.Context, daemonOptions{path: path, logLevel: level, watch: c.Duration("watch")}, cfg, log)
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			if err := d.run(c.Context); err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			return nil
		},
	}
}
