package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/forwarder"
)

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
		t.log.Info("forwarding")
	}
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
