package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/admin"
)

// reloadCommand asks the running daemon to load its configuration file
// again, as SIGHUP does, but says how it went: a file with problems is
// rejected, changes nothing, and every problem is printed as
// file:line:col: message.
func reloadCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "reload",
		Usage:     "make the running daemon load its configuration file again; a file with problems changes nothing and each is printed",
		ArgsUsage: " ",
		Flags:     adminFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c, "reload"); err != nil {
				return err
			}
			ac, err := dialAdmin(c)
			if err != nil {
				return fmt.Errorf("reload: %w", err)
			}
			defer ac.Close()
			res, err := ac.Reload(c.Context)
			if err != nil {
				for _, p := range admin.Problems(err) {
					fmt.Fprintln(e.stderr, p)
				}
				return adminError("reload", err)
			}
			if c.Bool("json") {
				return printJSON(e, res)
			}
			changes := res.Changes
			if changes == "" {
				changes = "no changes"
			}
			fmt.Fprintf(e.stdout, "reloaded %s (sha256 %s): %s\n", res.Config.Path, res.Config.SHA256, changes)
			return nil
		},
	}
}
