package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/forwarder"
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

// ifaceArg returns the command's single argument, IFACE, once it is a name
// the kernel would give an interface: it names a pin directory, so a path
// ("..", "a/b") must be refused before anything is touched.
func ifaceArg(c *cli.Context, cmd string) (string, error) {
	iface, err := oneArg(c, cmd, "IFACE")
	if err != nil {
		return "", err
	}
	if err := forwarder.CheckInterfaceName(iface); err != nil {
		return "", fmt.Errorf("%s: %w", cmd, err)
	}
	return iface, nil
}
