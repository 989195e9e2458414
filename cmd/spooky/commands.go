package main

import "github.com/urfave/cli/v2"

// commands lists the subcommands. Each lives in a file of its own named for it.
func commands(e env) []*cli.Command {
	return []*cli.Command{
		attachCommand(e),
		detachCommand(e),
		statsCommand(e),
		decapCommand(e),
		passCommand(e),
		serveCommand(e),
		cidCommand(e),
		validateCommand(e),
		statusCommand(e),
		backendsCommand(e),
		drainCommand(e),
		undrainCommand(e),
		reloadCommand(e),
	}
}
