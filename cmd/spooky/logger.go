package main

import (
	"io"
	"log/slog"

	"github.com/spooky-lb/spooky/config"
)

// newLogger returns the daemon's logger as the config's log section asks.
func newLogger(w io.Writer, c config.LogConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.SlogLevel()}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
