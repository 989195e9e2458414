package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/spooky-lb/spooky/config"
)

// Probe is one target's active check as the Checker runs it: plain data,
// compared field by field when Set reconciles. ProbesFromConfig builds
// them from the configuration; a zero Interval, Timeout, Rise, Fall,
// Path, ExpectStatus or ALPN takes the configuration's default.
type Probe struct {
	// Target is what the verdicts are reported on.
	Target Target
	// Type is the protocol: quic (handshake), http3, https, http or tcp
	// (connect).
	Type config.CheckType
	// Addr is the host:port to connect to. A host name is resolved at
	// every probe.
	Addr string
	// Mark, if not zero, is set as SO_MARK on the probe's socket, so that
	// a probe of the VIP is steered to the one backend it checks. Setting
	// it needs CAP_NET_ADMIN (or CAP_NET_RAW since Linux 5.17).
	Mark uint32

	// Path (http types) is the request path.
	Path string
	// Host (http types), if set, is the Host header (:authority).
	Host string
	// H2C (http) speaks cleartext HTTP/2 with prior knowledge (RFC 9113
	// §3.3) instead of HTTP/1.1, for h2c:// upstreams.
	H2C bool
	// ExpectStatus (http types) are the statuses that pass.
	ExpectStatus []config.StatusRange
	// Body (http types), if set, is an RE2 expression that must match
	// within the first MaxProbeBody bytes of the response body.
	Body string

	// ALPN (quic) is the protocol offered in the handshake.
	ALPN string
	// TLS (https, http3, quic) says what to send and what to verify.
	TLS ProbeTLS

	// Interval between the starts of two probes.
	Interval time.Duration
	// Jitter, at most config.MaxCheckJitter, makes each gap Interval times
	// a random factor in [1-Jitter, 1+Jitter].
	Jitter float64
	// Timeout bounds one probe, connection set-up included.
	Timeout time.Duration
	// Rise consecutive passes make a failed target healthy again; Fall
	// consecutive failures make a healthy one unhealthy.
	Rise, Fall int
}

// ProbeTLS is how a probe speaks TLS.
type ProbeTLS struct {
	// ServerName is sent as SNI (not for an IP address, RFC 6066 §3) and
	// verified when Verify is set. If empty, the address's host.
	ServerName string
	// CAFile is a PEM file of the CAs to trust; if empty, the system's.
	CAFile string
	// Verify checks the certificate chain and name. Without it any
	// certificate passes: the probe asks whether the server is up.
	Verify bool
}

// MaxProbeBody is how much of a response body a probe reads to match Body.
const MaxProbeBody = 64 << 10

// userAgent names spooky's probes in backends' access logs.
const userAgent = "spooky-health-check"

// withDefaults fills p's zero fields from the configuration's defaults, so
// a Probe built in Go and one built from a file compare alike.
func (p Probe) withDefaults() Probe {
	if p.Interval <= 0 {
		p.Interval = config.DefaultCheckInterval
	}
	if p.Timeout <= 0 {
		p.Timeout = min(config.DefaultCheckTimeout, p.Interval)
	}
	if p.Rise <= 0 {
		p.Rise = config.DefaultCheckRise
	}
	if p.Fall <= 0 {
		p.Fall = config.DefaultCheckFall
	}
	p.Jitter = min(max(p.Jitter, 0), config.MaxCheckJitter)
	if p.Type.IsHTTP() {
		if p.Path == "" {
			p.Path = config.DefaultCheckPath
		}
		if len(p.ExpectStatus) == 0 {
			r, _ := config.ParseStatusRange(config.DefaultCheckExpectStatus)
			p.ExpectStatus = []config.StatusRange{r}
		}
	}
	if p.Type == config.CheckQUIC && p.ALPN == "" {
		p.ALPN = config.DefaultCheckALPN
	}
	return p
}

// equal reports whether two probes check the same way.
func (p Probe) equal(q Probe) bool {
	a, b := p, q
	a.ExpectStatus, b.ExpectStatus = nil, nil // nil and empty alike
	return reflect.DeepEqual(a, b) && slices.Equal(p.ExpectStatus, q.ExpectStatus)
}

// outcome is one probe's result before timing is added.
type outcome struct {
	ok bool
	// what passed ("200", "handshake") or why it failed ("status 503").
	detail string
	// local marks a probe that could not be sent for a reason of spooky's
	// own (a socket mark it may not set, an unreadable CA file). It says
	// nothing about the target, so it moves no counter.
	local bool
}

func pass(detail string) outcome { return outcome{ok: true, detail: detail} }

// localError is a failure on spooky's side, before anything is sent.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// failure describes err, met at stage ("connect", "handshake"), as a
// reason: "connect: connection refused", "timeout after 1s".
func failure(ctx context.Context, timeout time.Duration, stage string, err error) outcome {
	var le *localError
	if errors.As(err, &le) {
		return outcome{detail: le.Error(), local: true}
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded || (errors.As(err, &ne) && ne.Timeout()) {
		return outcome{detail: "timeout after " + timeout.String()}
	}
	return outcome{detail: describe(stage, err)}
}

// describe strips the wrappers that repeat what a reason already says
// (the URL, "dial tcp 198.18.1.1:443") down to the cause, named by the
// system call that met it ("connect: connection refused") or else by the
// probe's stage ("handshake: ...").
func describe(stage string, err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Syscall + ": " + se.Err.Error()
	}
	return stage + ": " + err.Error()
}

// judgeResponse checks an HTTP response's status and, if asked, its body.
func judgeResponse(ctx context.Context, timeout time.Duration, status int, body io.Reader, expect []config.StatusRange, re *regexp.Regexp) outcome {
	if !slices.ContainsFunc(expect, func(r config.StatusRange) bool { return r.Contains(status) }) {
		return outcome{detail: "status " + strconv.Itoa(status)}
	}
	if re != nil {
		b, err := io.ReadAll(io.LimitReader(body, MaxProbeBody))
		if err != nil {
			return failure(ctx, timeout, "read body", err)
		}
		if !re.Match(b) {
			return outcome{detail: fmt.Sprintf("body does not match %q", re.String())}
		}
	}
	return pass(strconv.Itoa(status))
}

// tlsConfig builds the client TLS configuration; an unreadable CA file is
// a local error.
func (t ProbeTLS) tlsConfig(nextProtos ...string) (*tls.Config, error) {
	c := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: !t.Verify, NextProtos: nextProtos,
		// No post-quantum key share: a probe's secrets guard nothing worth
		// one, and ML-KEM's 1184 octets make a QUIC ClientHello span two
		// packets and double a probe's CPU. The key share is X25519's; a
		// server without it asks for P-256 (RFC 8446 §4.1.4), which TLS 1.3
		// servers must support (§9.1).
		CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}}
	if t.Verify && t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, &localError{fmt.Errorf("read ca: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &localError{fmt.Errorf("ca %s holds no PEM certificate", t.CAFile)}
		}
		c.RootCAs = pool
	}
	return c, nil
}

// compileBody compiles p.Body; a bad pattern is a local error.
func (p Probe) compileBody() (*regexp.Regexp, error) {
	if p.Body == "" {
		return nil, nil
	}
	re, err := regexp.Compile(p.Body)
	if err != nil {
		return nil, &localError{fmt.Errorf("body pattern: %w", err)}
	}
	return re, nil
}

// prober runs one kind of probe; probe is bounded by ctx's deadline.
type prober interface {
	probe(ctx context.Context) outcome
	close()
}

// newProber builds p's prober; its errors are local.
func newProber(p Probe) (prober, error) {
	switch p.Type {
	case config.CheckTCP:
		return &tcpProber{p: p}, nil
	case config.CheckHTTP, config.CheckHTTPS:
		return newHTTPProber(p)
	case config.CheckQUIC, config.CheckHTTP3:
		return newQUICProber(p)
	}
	return nil, &localError{fmt.Errorf("unknown check type %q", p.Type)}
}

// roundDuration keeps a reason short: 3ms, 250µs.
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}
