package health

import (
	"context"
	"net"
)

// tcpProber passes when a TCP connection is established.
type tcpProber struct{ p Probe }

func (t *tcpProber) probe(ctx context.Context) outcome {
	d := net.Dialer{Control: markControl(t.p.Mark)}
	c, err := d.DialContext(ctx, "tcp", t.p.Addr)
	if err != nil {
		return failure(ctx, t.p.Timeout, "connect", err)
	}
	// Close with a reset, as HAProxy's connect checks do: a graceful close
	// would leave one TIME_WAIT socket per probe on this host, thousands
	// of them with hundreds of targets (RFC 9293 §3.6.1).
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	return pass("connected")
}

func (t *tcpProber) close() {}
