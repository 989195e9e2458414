//lint:file-ignore SA1019 golang.org/x/net/http2.Transport is deprecated for net/http's, which rejects the :protocol field of an extended CONNECT (RFC 8441) before its HTTP/2 code would send it.

package l7

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"

	"github.com/spooky-lb/spooky/test/wstest"
)

// wsConn is a WebSocket client connection, whatever carries it.
type wsConn interface {
	// send sends one binary message.
	send(ctx context.Context, msg []byte) error
	// recv returns the next message; a close frame from the peer is a
	// *closeFrameError, the connection ending without one another error.
	recv(ctx context.Context) ([]byte, error)
	// close runs the closing handshake (RFC 6455 §7.1.2): it sends a close
	// frame and waits for the peer's.
	close(code int, reason string) error
	// abort drops the connection.
	abort()
}

// closeCode is the code of the close frame err reports, or -1.
func closeCode(err error) int {
	if c := wstest.CloseCode(err); c != -1 {
		return c
	}
	if c := websocket.CloseStatus(err); c != -1 {
		return int(c)
	}
	return -1
}

// coderConn is github.com/coder/websocket's client over HTTP/1.1.
type coderConn struct{ c *websocket.Conn }

func (c coderConn) send(ctx context.Context, msg []byte) error {
	return c.c.Write(ctx, websocket.MessageBinary, msg)
}

func (c coderConn) recv(ctx context.Context) ([]byte, error) {
	_, b, err := c.c.Read(ctx)
	return b, err
}

func (c coderConn) close(code int, reason string) error {
	return c.c.Close(websocket.StatusCode(code), reason)
}

func (c coderConn) abort() { _ = c.c.CloseNow() }

// frameConn is a wstest.Conn (RFC 6455 frames over an extended CONNECT's
// stream) as a wsConn.
type frameConn struct {
	c       *wstest.Conn
	abortFn func()
}

func (f *frameConn) send(_ context.Context, msg []byte) error { return f.c.Send(msg) }

func (f *frameConn) recv(context.Context) ([]byte, error) { return f.c.Recv() }

func (f *frameConn) close(code int, reason string) error { return f.c.Close(code, reason) }

func (f *frameConn) abort() { f.abortFn() }

// wsDialer opens a WebSocket to path on a test server: it returns the
// connection, or the status the handshake was refused with.
type wsDialer func(t testing.TB, path string) (wsConn, int, error)

// h1WebSocket dials with github.com/coder/websocket over HTTP/1.1 and TLS.
func h1WebSocket(cert testCert, addr string) wsDialer {
	return func(t testing.TB, path string) (wsConn, int, error) {
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: cert.pool},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
		}
		p := new(http.Protocols)
		p.SetHTTP1(true)
		tr.Protocols = p
		t.Cleanup(tr.CloseIdleConnections)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, res, err := websocket.Dial(ctx, "wss://app.example.com"+path, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
		if err != nil {
			if res != nil {
				return nil, res.StatusCode, nil
			}
			return nil, 0, err
		}
		c.SetReadLimit(4 << 20)
		t.Cleanup(func() { _ = c.CloseNow() })
		return coderConn{c}, http.StatusSwitchingProtocols, nil
	}
}

// h3WebSocket dials an extended CONNECT with :protocol websocket (RFC
// 9220) over a quic-go HTTP/3 client connection.
func h3WebSocket(cert testCert, addr string) wsDialer {
	return func(t testing.TB, path string) (wsConn, int, error) {
		str, status, err := h3Connect(t, cert, addr, "websocket", "https://app.example.com"+path, nil)
		if err != nil || status != http.StatusOK {
			return nil, status, err
		}
		return &frameConn{c: wstest.New(str, str, str.Close), abortFn: func() {
			str.CancelRead(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
			str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeRequestCanceled))
		}}, status, nil
	}
}

// h3Connect sends a CONNECT (extended when protocol is set) on a new
// HTTP/3 connection to addr and returns its stream and the status.
func h3Connect(t testing.TB, cert testCert, addr, protocol, target string, hdr http.Header) (*http3.RequestStream, int, error) {
	str, res, err := h3ConnectResponse(t, cert, addr, protocol, target, hdr)
	if err != nil {
		return nil, 0, err
	}
	return str, res.StatusCode, nil
}

// h3ConnectResponse is h3Connect returning the whole response head.
func h3ConnectResponse(t testing.TB, cert testCert, addr, protocol, target string, hdr http.Header) (*http3.RequestStream, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, addr, &tls.Config{RootCAs: cert.pool, ServerName: "app.example.com", NextProtos: []string{http3.NextProtoH3}}, &quic.Config{MaxIdleTimeout: time.Minute})
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { _ = qc.CloseWithError(0, "") })
	cc := (&http3.Transport{}).NewClientConn(qc)
	select {
	case <-cc.ReceivedSettings():
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	if protocol != "" && !cc.Settings().EnableExtendedConnect {
		return nil, nil, errors.New("server did not enable extended CONNECT")
	}
	str, err := cc.OpenRequestStream(ctx)
	if err != nil {
		return nil, nil, err
	}
	req := connectRequest(protocol, target, nil)
	if protocol != "" {
		req.Proto = protocol
	}
	maps.Copy(req.Header, hdr)
	if err := str.SendRequestHeader(req); err != nil {
		return nil, nil, err
	}
	res, err := str.ReadResponse()
	if err != nil {
		return nil, nil, err
	}
	return str, res, nil
}

// connectRequest is a CONNECT to target: a URL for an extended CONNECT
// (a WebSocket), host:port for a plain one (RFC 9110 §9.3.6).
func connectRequest(protocol, target string, body io.Reader) *http.Request {
	if protocol == "" {
		req, _ := http.NewRequest(http.MethodConnect, "https://"+target, body)
		req.URL = &url.URL{Scheme: "https", Host: target} // the scheme picks the transport; CONNECT sends none
		req.Host = target
		return req
	}
	req, _ := http.NewRequest(http.MethodConnect, target, body)
	req.Header.Set("Sec-WebSocket-Version", "13")
	return req
}

// h2Transport is an HTTP/2 client of the server's TCP listener. It is
// golang.org/x/net/http2's: net/http's Transport rejects the :protocol
// field that asks for an extended CONNECT before its HTTP/2 code sees it.
func h2Transport(t testing.TB, cert testCert, addr string) *http2.Transport {
	tr := &http2.Transport{
		TLSClientConfig: &tls.Config{RootCAs: cert.pool, ServerName: "app.example.com"},
		DialTLSContext: func(ctx context.Context, network, _ string, tc *tls.Config) (net.Conn, error) {
			return (&tls.Dialer{Config: tc}).DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// h2Stream sends a CONNECT (extended when protocol is set, RFC 8441) with
// net/http's HTTP/2 client and returns the tunnel as a reader and writer.
func h2Stream(t testing.TB, cert testCert, addr, protocol, target string, hdr http.Header) (io.ReadCloser, *io.PipeWriter, int, error) {
	pr, pw := io.Pipe()
	req := connectRequest(protocol, target, pr)
	if protocol != "" {
		req.Header.Set(":protocol", protocol)
	}
	maps.Copy(req.Header, hdr)
	res, err := h2Transport(t, cert, addr).RoundTrip(req)
	if err != nil {
		return nil, nil, 0, err
	}
	t.Cleanup(func() { res.Body.Close(); pw.Close() })
	if res.ProtoMajor != 2 {
		return nil, nil, 0, fmt.Errorf("got %s, want HTTP/2", res.Proto)
	}
	return res.Body, pw, res.StatusCode, nil
}

// h2WebSocket dials an extended CONNECT with :protocol websocket (RFC 8441).
func h2WebSocket(cert testCert, addr string) wsDialer {
	return func(t testing.TB, path string) (wsConn, int, error) {
		body, pw, status, err := h2Stream(t, cert, addr, "websocket", "https://app.example.com"+path, nil)
		if err != nil || status != http.StatusOK {
			return nil, status, err
		}
		return &frameConn{c: wstest.New(body, pw, pw.Close), abortFn: func() {
			_ = pw.CloseWithError(errors.New("aborted"))
			_ = body.Close()
		}}, status, nil
	}
}

// h2xconnect is the GODEBUG setting that makes net/http's HTTP/2 server
// offer extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 8441 §3).
// net/http reads it from the environment once, when the process starts.
const h2xconnect = "http2xconnect=1"

// inH2XConnectProcess runs the calling test in a child process whose
// environment turns extended CONNECT on for HTTP/2, unless this process
// has it already; it reports whether the caller should go on (it is the
// child).
func inH2XConnectProcess(t *testing.T) bool {
	t.Helper()
	if strings.Contains(os.Getenv("GODEBUG"), h2xconnect) {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "GODEBUG="+strings.TrimPrefix(os.Getenv("GODEBUG")+","+h2xconnect, ","))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s with GODEBUG=%s: %v\n%s", t.Name(), h2xconnect, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s did not run in the child process:\n%s", t.Name(), out)
	}
	t.Logf("ran in a child process with GODEBUG=%s", h2xconnect)
	return false
}
