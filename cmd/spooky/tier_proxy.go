package main

import (
	"context"

	"github.com/spooky-lb/spooky/config"
	"github.com/spooky-lb/spooky/forwarder"
)

// proxyTier is the userspace proxy: it serves the l4 services with
// forwarding: proxy, beside XDP (attach) or the request tier (serve).
// Backend health comes from the daemon's registry, as for XDP.
type proxyTier struct {
	p *forwarder.Proxy
}

func (t *proxyTier) apply(ctx context.Context, cfg *config.Config) error {
	return t.p.Apply(ctx, cfg)
}

// stop closes every session and socket and removes the local routes the
// proxy added for its VIPs: unlike XDP, nothing forwards without the
// daemon.
func (t *proxyTier) stop(context.Context) error { return t.p.Close() }
