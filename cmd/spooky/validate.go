package main

import (
	"errors"
	"fmt"

	"github.com/spooky-lb/spooky/config"
	"github.com/urfave/cli/v2"
)

// validateCommand checks a configuration file the way the daemon and reload
// would, without touching anything: every problem is printed as
// file:line:col: message, so an editor or CI can jump to it.
func validateCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a configuration file and list every problem with its line and column",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: config.DefaultPath, Usage: "configuration `FILE`"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("validate: unexpected argument %q (give the file with -c FILE)", c.Args().First())
			}
			path := c.String("config")
			cfg, err := config.Load(path)
			var problems config.Errors
			if errors.As(err, &problems) {
				for _, p := range problems {
					fmt.Fprintln(e.stderr, p)
				}
				noun := "problems"
				if len(problems) == 1 {
					noun = "problem"
				}
				return fmt.Errorf("validate: %s: %d %s", path, len(problems), noun)
			}
			if err != nil {
				return fmt.Errorf("validate: %w", err)
			}
			fmt.Fprintf(e.stdout, "%s: ok: %s\n", path, cfg.Summarize())
			return nil
		},
	}
}
