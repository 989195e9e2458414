package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/config"
)

// adminFlags are the flags of the commands that talk to a running daemon:
// where it is, and how to print what it says.
func adminFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name: "admin", EnvVars: []string{"SPOOKY_ADMIN"},
			Usage: "the daemon's admin API: a socket `PATH` or a loopback HOST:PORT (default: the admin section of the config file)",
		},
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: config.DefaultPath,
			Usage: "configuration `FILE` of the daemon, whose admin section says where its API is"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON"},
	}
}

// dialAdmin returns a client of the daemon the flags name: --admin if
// given, otherwise the admin section of the daemon's configuration file,
// so that each of several daemons on a host is found by its own file.
func dialAdmin(c *cli.Context) (*admin.Client, error) {
	addr := c.String("admin")
	if addr == "" {
		var err error
		if addr, err = adminAddrFromFile(c.String("config")); err != nil {
			return nil, err
		}
	}
	return admin.Dial(addr)
}

// adminAddrFromFile reads where the admin API listens from a configuration
// file. Only the admin section is read, and leniently: an operator about
// to `spooky reload` may have left a mistake elsewhere in the file, and
// that reload is how they get to see it.
func adminAddrFromFile(path string) (string, error) {
	suggest := "--admin PATH|HOST:PORT names the daemon's API"
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the admin socket from the config file: %w; %s", err, suggest)
	}
	var f struct {
		Admin config.AdminConfig `yaml:"admin"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		return "", fmt.Errorf("cannot read the admin section of %s: %v; %s", path, firstLine(err.Error()), suggest)
	}
	a := f.Admin
	switch {
	case a.Listen != "" && a.Socket != "":
		return "", fmt.Errorf("%s: admin sets both socket and listen; %s", path, suggest)
	case a.Listen != "":
		return a.Listen, nil
	case a.Socket == "":
		return config.DefaultAdminSocket, nil
	case !filepath.IsAbs(a.Socket):
		return "", fmt.Errorf("%s: admin socket %q is not an absolute path; %s", path, a.Socket, suggest)
	}
	return a.Socket, nil
}

// adminError adds what an operator can do about an unreachable daemon.
func adminError(cmd string, err error) error {
	if errors.Is(err, admin.ErrNoDaemon) {
		return fmt.Errorf("%s: %w (is it running? --admin sets the socket)", cmd, err)
	}
	return fmt.Errorf("%s: %w", cmd, err)
}

// noArgs refuses positional arguments.
func noArgs(c *cli.Context, cmd string) error {
	if c.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", cmd, c.Args().First())
	}
	return nil
}

// formatTime writes t as RFC 3339 in UTC, or "-" if it is unset.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func firstLine(s string) string {
	for i := range len(s) {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
