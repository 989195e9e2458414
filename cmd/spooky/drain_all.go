package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/admin"
)

// allFlag is --all of drain and undrain.
func allFlag(usage string) cli.Flag {
	return &cli.BoolFlag{Name: "all", Usage: usage}
}

// drainAll runs `spooky drain --all` (drain) or `spooky undrain --all`:
// every backend and upstream at once, and the BGP routes with them.
func drainAll(c *cli.Context, e env, drain bool) error {
	cmd := "undrain"
	if drain {
		cmd = "drain"
	}
	if c.NArg() != 0 {
		return fmt.Errorf("%s: --all takes no TARGET (got %d arguments)", cmd, c.NArg())
	}
	if c.Bool("wait") {
		return errors.New("drain: --wait follows one TARGET; with --all, watch spooky status")
	}
	ac, err := dialAdmin(c)
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	defer ac.Close()
	res, err := ac.DrainAll(c.Context, drain)
	if err != nil {
		return adminError(cmd, err)
	}
	if c.Bool("json") {
		return printJSON(e, res)
	}
	fmt.Fprintf(e.stdout, "%s: %d backends and upstreams %sed; %s\n", cmd, res.Targets, cmd, describeRoutes(res))
	return nil
}

// describeRoutes says what BGP announces after a drain or undrain --all.
func describeRoutes(res *admin.DrainAllResult) string {
	if res.Drained {
		return "BGP routes withdrawn (if the bgp section is set)"
	}
	if len(res.Routes) == 0 {
		return "no BGP routes announced"
	}
	ps := make([]string, len(res.Routes))
	for i, r := range res.Routes {
		ps[i] = r.Prefix.String()
	}
	return "BGP announces " + strings.Join(ps, ", ")
}
