package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/config"
)

// loadConfig loads and validates path, printing every problem.
func loadConfig(e env, path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	var problems config.Errors
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintln(e.stderr, p)
		}
		return nil, fmt.Errorf("%s: %d problems", path, len(problems))
	}
	return cfg, err
}

// oneArg returns the command's single positional argument.
func oneArg(c *cli.Context, cmd, name string) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s: want exactly one argument, %s (got %d)", cmd, name, c.NArg())
	}
	return c.Args().First(), nil
}
