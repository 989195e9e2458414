package main

import (
	"io"
	"log/slog"

	"github.com/spooky-lb/spooky/config"
)

// newLogger returns the daemon's logger as the config's log section asks,
// and the level a reload may change.
func newLogger(w io.Writer, c config.LogConfig) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.Set(c.SlogLevel())
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}
