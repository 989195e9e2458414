package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/forwarder"
)

// pinRootFlag is shared by the commands that find pinned state.
var pinRootFlag = &cli.StringFlag{
	Name:  "pin-root",
	Value: forwarder.DefaultPinRoot,
	Usage: "bpffs `DIR` holding one directory of pins per interface",
}

func xdpModeFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "xdp-mode", Value: string(forwarder.XDPNative), Usage: "native or generic"}
}

// attachCommand runs the XDP fast path on an interface until SIGTERM.
func attachCommand(e env) *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "attach the XDP load balancer to IFACE and keep its maps equal to the config (SIGHUP reloads)",
		ArgsUsage: "IFACE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: config.DefaultPath, Usage: "configuration `FILE`"},
			xdpModeFlag(),
			pinRootFlag,
		},
		Action: func(c *cli.Context) error {
			iface, err := ifaceArg(c, "attach")
			if err != nil {
				return err
			}
			mode := forwarder.XDPMode(c.String("xdp-mode"))
			if mode != forwarder.XDPNative && mode != forwarder.XDPGeneric {
				return fmt.Errorf("attach: --xdp-mode %q: want native or generic", mode)
			}
			path := c.String("config")
			cfg, err := loadConfig(e, path)
			if err != nil {
				return fmt.Errorf("attach: %w", err)
			}
			log := newLogger(e.stderr, cfg.Log)
			x, err := forwarder.Attach(forwarder.AttachOptions{
				Interface: iface, Mode: mode, PinRoot: c.String("pin-root"), Logger: log,
			})
			if err != nil {
				return fmt.Errorf("attach: %w", err)
			}
			// Neighbour updates come in bursts (probe, reachable, stale);
			// the daemon settles them into one refresh of the next hops.
			refresh := make(chan struct{}, 1)
			if err := x.Resolver().WatchNeighbours(c.Context, func() {
				select {
				case refresh <- struct{}{}:
				default:
				}
			}); err != nil {
				log.Warn("next hops will not follow neighbour changes", "err", err)
			}
			d := &daemon{
				path:    path,
				log:     log,
				tiers:   []tier{&xdpTier{x: x, log: log}, &l7Tier{log: log}},
				refresh: refresh,
			}
			if err := d.run(c.Context, cfg); err != nil {
				return fmt.Errorf("attach: %w", err)
			}
			return nil
		},
	}
}

// xdpTier is the XDP fast path.
type xdpTier struct {
	x     *forwarder.XDP
	log   *slog.Logger
	sweep context.CancelFunc
	swept chan struct{} // closed when sweepFlows returns
}

// flowSweepEvery is how often idle flow entries are expired; flow timeouts
// are tens of seconds, so an entry outlives its timeout by at most this.
const flowSweepEvery = 5 * time.Second

func (t *xdpTier) apply(ctx context.Context, cfg *config.Config) error {
	if err := t.x.Apply(ctx, cfg); err != nil {
		return err
	}
	if t.sweep == nil {
		var sweepCtx context.Context
		sweepCtx, t.sweep = context.WithCancel(ctx)
		t.swept = make(chan struct{})
		go t.sweepFlows(sweepCtx)
	}
	t.log.Info("forwarding")
	return nil
}

func (t *xdpTier) sweepFlows(ctx context.Context) {
	defer close(t.swept)
	tick := time.NewTicker(flowSweepEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			n, err := t.x.ExpireFlows()
			if err != nil {
				t.log.Warn("expire idle flows", "err", err)
			} else if n > 0 {
				t.log.Debug("expired idle flows", "entries", n)
			}
		}
	}
}

func (t *xdpTier) stop(context.Context) error {
	if t.sweep != nil {
		t.sweep()
		<-t.swept // the maps close below
	}
	t.log.Info("the XDP program stays attached with its maps pinned (spooky detach removes it)")
	return t.x.Close()
}
