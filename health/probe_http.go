package health

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"

	"github.com/spooky-lb/spooky/config"
)

// httpProber sends GET Path over TCP (http, or https over TLS) and checks
// the status and body. Every probe opens a new connection, as a fresh
// client would: no connection outlives its probe.
type httpProber struct {
	p    Probe
	tr   *http.Transport
	url  string
	body *regexp.Regexp
}

func newHTTPProber(p Probe) (*httpProber, error) {
	body, err := p.compileBody()
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Control: markControl(p.Mark)}
	h := &httpProber{p: p, body: body}
	h.tr = &http.Transport{
		DialContext:        d.DialContext,
		DisableKeepAlives:  true,
		DisableCompression: true, // match the body as the server sends it
		Proxy:              nil,  // never through HTTP_PROXY: the probe is for the target
		Protocols:          new(http.Protocols),
	}
	scheme := "http"
	switch {
	case p.Type == config.CheckHTTPS:
		scheme = "https"
		tc, err := p.TLS.tlsConfig()
		if err != nil {
			return nil, err
		}
		h.tr.TLSClientConfig = tc
		// HTTP/2 if the server offers it by ALPN, else HTTP/1.1 (RFC 7301),
		// as the request tier connects to an https:// upstream.
		h.tr.Protocols.SetHTTP1(true)
		h.tr.Protocols.SetHTTP2(true)
	case p.H2C:
		h.tr.Protocols.SetUnencryptedHTTP2(true)
	default:
		h.tr.Protocols.SetHTTP1(true)
	}
	h.url = scheme + "://" + p.Addr + p.Path // Path may carry a query
	if _, err := url.Parse(h.url); err != nil {
		return nil, &localError{fmt.Errorf("probe url: %w", err)}
	}
	return h, nil
}

func (h *httpProber) probe(ctx context.Context) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return outcome{detail: "request: " + err.Error(), local: true}
	}
	if h.p.Host != "" {
		req.Host = h.p.Host
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := h.tr.RoundTrip(req)
	if err != nil {
		return failure(ctx, h.p.Timeout, "request", err)
	}
	defer resp.Body.Close()
	return judgeResponse(ctx, h.p.Timeout, resp.StatusCode, resp.Body, h.p.ExpectStatus, h.body)
}

func (h *httpProber) close() { h.tr.CloseIdleConnections() }
