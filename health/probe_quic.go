package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/spooky-lb/spooky/config"
)

// quicProber completes a QUIC handshake offering ALPN (quic) and, for
// http3, sends GET Path on that connection and checks the response. Each
// probe has its own UDP socket, made here so that it can carry the mark,
// and closes it before it returns.
type quicProber struct {
	p    Probe
	tls  *tls.Config
	conf *quic.Config
	h3   *http3.Transport // http3 only; its NewClientConn holds no state
	url  string
	body *regexp.Regexp
}

func newQUICProber(p Probe) (*quicProber, error) {
	q := &quicProber{p: p, conf: &quic.Config{
		HandshakeIdleTimeout: p.Timeout,
		// A probe connection never idles longer than a probe lasts.
		MaxIdleTimeout: p.Timeout,
	}}
	alpn := p.ALPN
	if p.Type == config.CheckHTTP3 {
		alpn = http3.NextProtoH3
		q.h3 = &http3.Transport{DisableCompression: true}
		q.url = "https://" + p.Addr + p.Path
		if _, err := url.Parse(q.url); err != nil {
			return nil, &localError{fmt.Errorf("probe url: %w", err)}
		}
		var err error
		if q.body, err = p.compileBody(); err != nil {
			return nil, err
		}
	}
	var err error
	if q.tls, err = p.TLS.tlsConfig(alpn); err != nil {
		return nil, err
	}
	q.tls.MinVersion = tls.VersionTLS13 // QUIC carries TLS 1.3 only (RFC 9001 §4.2)
	return q, nil
}

func (q *quicProber) probe(ctx context.Context) outcome {
	raddr, err := resolveUDP(ctx, q.p.Addr)
	if err != nil {
		return failure(ctx, q.p.Timeout, "resolve", err)
	}
	network := "udp6"
	if raddr.IP.To4() != nil {
		network = "udp4"
	}
	lc := net.ListenConfig{Control: markControl(q.p.Mark)}
	pc, err := lc.ListenPacket(ctx, network, ":0")
	if err != nil {
		var le *localError
		if !errors.As(err, &le) { // a mark error says enough by itself
			err = &localError{fmt.Errorf("open udp socket: %w", err)}
		}
		return failure(ctx, q.p.Timeout, "socket", err)
	}
	defer pc.Close()
	tr := &quic.Transport{Conn: pc}
	defer tr.Close()

	conn, err := tr.Dial(ctx, raddr, q.tls, q.conf)
	if err != nil {
		return failure(ctx, q.p.Timeout, "handshake", err)
	}
	if q.h3 == nil {
		// A clean close: no error (RFC 9000 §10.2) in the application's
		// terms: H3_NO_ERROR for HTTP/3 (RFC 9114 §8.1), 0 otherwise, which
		// is DOQ_NO_ERROR for DNS over QUIC (RFC 9250 §4.3). A server that
		// has not yet confirmed the handshake may read it as the
		// APPLICATION_ERROR that stands for any application close in a
		// Handshake packet (RFC 9000 §10.2.3).
		code := quic.ApplicationErrorCode(0)
		if q.tls.NextProtos[0] == http3.NextProtoH3 {
			code = quic.ApplicationErrorCode(http3.ErrCodeNoError)
		}
		_ = conn.CloseWithError(code, "")
		return pass("handshake")
	}
	defer conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, q.url, nil)
	if err != nil {
		return outcome{detail: "request: " + err.Error(), local: true}
	}
	if q.p.Host != "" {
		req.Host = q.p.Host
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := q.h3.NewClientConn(conn).RoundTrip(req)
	if err != nil {
		return failure(ctx, q.p.Timeout, "request", err)
	}
	defer resp.Body.Close()
	return judgeResponse(ctx, q.p.Timeout, resp.StatusCode, resp.Body, q.p.ExpectStatus, q.body)
}

func (q *quicProber) close() {}

// resolveUDP resolves host:port, looking a name up within ctx.
func resolveUDP(ctx context.Context, hostport string) (*net.UDPAddr, error) {
	if ap, err := netip.ParseAddrPort(hostport); err == nil {
		return net.UDPAddrFromAddrPort(ap), nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(pn))), nil
}
