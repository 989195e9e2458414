package l7

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Client is the round tripper for cleartext HTTP/1.1 upstreams: a pool of
// keep-alive connections, each carrying one exchange at a time, written and
// read on the calling goroutine (RFC 9112). net/http's Transport runs two
// goroutines per connection and hands every exchange between them over
// channels; in the request tier's profile that and its per-request
// bookkeeping cost about a third of the proxied request. A request with a
// body is the one case that takes a second goroutine: the body is written
// while the response is read, so either may stream. Upgrades and CONNECT
// go to the fallback net/http Transport.
type h1Client struct {
	addr        string
	dialer      net.Dialer
	maxIdle     int
	idleTimeout time.Duration
	fallback    http.RoundTripper

	// checkIdleAfter: a connection idle longer is checked for a close by
	// the upstream before it is reused (see h1Conn.alive).
	checkIdleAfter time.Duration

	mu     sync.Mutex
	idle   []*h1Conn // most recently used last
	closed bool
}

// h1CheckIdleAfter is h1Client.checkIdleAfter's value. Upstreams close
// idle connections after seconds (Node.js after 5 s, nginx after 75 s),
// and under load connections go back out within microseconds, so those
// skip the check's system call.
const h1CheckIdleAfter = 500 * time.Millisecond

// h1BufSize sizes each connection's read and write buffers, as the
// net/http Transport this replaces was configured.
const h1BufSize = 32 << 10

type h1Conn struct {
	c  net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// scratch holds the response head being read.
	scratch []byte
	idleAt  time.Time
}

// errH1ServerClosedIdle is a reused connection the upstream closed before
// answering: the keep-alive race of RFC 9112 §9.3.1, safe to retry once
// on a new connection when the request has no body.
var errH1ServerClosedIdle = errors.New("upstream closed an idle connection")

// aLongTimeAgo is a deadline in the past, to wake blocked I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// RoundTrip sends req on an idle connection or a new one and returns the
// response once its head is read; the body streams from the connection.
// It always closes req.Body, as http.RoundTripper asks.
func (t *h1Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodConnect || req.Header.Get("Upgrade") != "" {
		return t.fallback.RoundTrip(req)
	}
	if err := validH1Request(req); err != nil {
		closeBody(req)
		return nil, err
	}
	body, chunked, err := requestFraming(req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if body == nil {
		closeBody(req)
	}
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(req.Context())
		if err != nil {
			closeBody(req)
			return nil, err
		}
		res, err := t.exchange(pc, req, body, chunked)
		if err == nil {
			return res, nil
		}
		// Without a body the request can go again as it was.
		if reused && attempt == 0 && body == nil && errors.Is(err, errH1ServerClosedIdle) {
			continue
		}
		return nil, err
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// get returns an idle connection or dials a new one.
func (t *h1Client) get(ctx context.Context) (*h1Conn, bool, error) {
	now := time.Now()
	t.mu.Lock()
	for len(t.idle) > 0 {
		pc := t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		if idle := now.Sub(pc.idleAt); idle < t.idleTimeout {
			t.mu.Unlock()
			if idle <= t.checkIdleAfter || pc.alive() {
				return pc, true, nil
			}
			_ = pc.c.Close()
			t.mu.Lock()
			continue
		}
		// The most recent is stale, so are the rest.
		stale := append([]*h1Conn{pc}, t.idle...)
		t.idle = t.idle[:0]
		t.mu.Unlock()
		for _, s := range stale {
			_ = s.c.Close()
		}
		t.mu.Lock()
	}
	t.mu.Unlock()
	c, err := t.dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, false, err
	}
	pc := &h1Conn{c: c, br: bufio.NewReaderSize(c, h1BufSize), bw: bufio.NewWriterSize(c, h1BufSize)}
	return pc, false, nil
}

// put returns a connection whose exchange completed to the pool.
func (t *h1Client) put(pc *h1Conn) {
	pc.idleAt = time.Now()
	t.mu.Lock()
	if t.closed || len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		_ = pc.c.Close()
		return
	}
	t.idle = append(t.idle, pc)
	t.mu.Unlock()
}

// closeIdle closes the idle connections; with final, the client takes no
// more back (connections in use close when their exchange ends).
func (t *h1Client) closeIdle(final bool) {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.closed = t.closed || final
	t.mu.Unlock()
	for _, pc := range idle {
		_ = pc.c.Close()
	}
	if ci, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// exchange sends req on pc and reads the response head. The response body
// owns pc from then on and gives it back, or closes it, when closed.
func (t *h1Client) exchange(pc *h1Conn, req *http.Request, body io.Reader, chunked bool) (*http.Response, error) {
	ctx := req.Context()
	// A cancelled request (route timeout, client gone) must wake any read
	// or write blocked on the upstream: the deadline does, without a
	// goroutine per request waiting on ctx.Done.
	stop := context.AfterFunc(ctx, func() { _ = pc.c.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		_ = pc.c.Close()
		if cerr := context.Cause(ctx); cerr != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", cerr, err)
		}
		return nil, err
	}

	writeRequestHead(pc.bw, req, chunked, body)
	var wdone chan error
	if body == nil {
		if err := pc.bw.Flush(); err != nil {
			return fail(staleErr(err, true))
		}
	} else {
		wdone = make(chan error, 1)
		go func() {
			err := writeRequestBody(pc, req, body, chunked)
			if err != nil {
				// The request cannot be completed: close, as net/http
				// does, so that a read waiting on the upstream (which
				// waits for the rest of the body) ends now.
				_ = pc.c.Close()
			}
			wdone <- err
		}()
	}

	rb, err := readResponseHead(pc, req)
	if err != nil {
		if wdone != nil {
			// The body writer may be blocked on the upstream or the
			// client; closing the connection ends the first, and its
			// error is the better cause if it failed first.
			_ = pc.c.Close()
			if werr := <-wdone; werr != nil && !errors.Is(werr, net.ErrClosed) {
				err = werr
			}
		}
		return fail(staleErr(err, wdone == nil))
	}
	rb.t, rb.pc, rb.stop, rb.wdone = t, pc, stop, wdone
	if err := rb.frame(req); err != nil {
		rb.reusable = false
		_ = rb.Close()
		return nil, err
	}
	return &rb.res, nil
}

// staleErr marks an upstream that closed a connection before a byte of its
// answer as errH1ServerClosedIdle, so a reused connection may be retried.
func staleErr(err error, nothingRead bool) error {
	if nothingRead && (errors.Is(err, io.EOF) || isConnReset(err)) {
		return fmt.Errorf("%w: %w", errH1ServerClosedIdle, err)
	}
	return err
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// requestFraming says how the body goes out (RFC 9112 §6): nil for none,
// else the reader to send, chunked when its length is not known.
func requestFraming(req *http.Request) (io.Reader, bool, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, false, nil
	}
	switch {
	case req.ContentLength > 0:
		return req.Body, len(req.Trailer) > 0, nil
	case req.ContentLength < 0:
		return req.Body, true, nil
	}
	// ContentLength 0 with a body: the length is unknown (HTTP/3 cannot
	// tell an absent body from an empty one). Probe one byte, as net/http
	// does, and send no body if there is none.
	var one [1]byte
	n, err := io.ReadFull(req.Body, one[:])
	if n == 0 {
		if err == io.EOF {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("read request body: %w", err)
	}
	return io.MultiReader(strings.NewReader(string(one[:])), req.Body), true, nil
}

// reqSkip are the fields the request's own framing writes.
func reqSkip(k string) bool {
	switch k {
	case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
		return true
	}
	return false
}

// validH1Request refuses what HTTP/1.1 cannot carry unchanged: a field
// name or value that would split the message (CR, LF, NUL) is a request
// smuggling attempt (RFC 9110 §5.5, RFC 9112 §11.2).
func validH1Request(req *http.Request) error {
	if !validMethod(req.Method) {
		return fmt.Errorf("invalid method %q", req.Method)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if !httpguts.ValidHostHeader(host) {
		return fmt.Errorf("invalid host %q", host)
	}
	for _, h := range []http.Header{req.Header, req.Trailer} {
		for k, vs := range h {
			if !httpguts.ValidHeaderFieldName(k) {
				return fmt.Errorf("invalid header field name %q", k)
			}
			for _, v := range vs {
				if !httpguts.ValidHeaderFieldValue(v) {
					return fmt.Errorf("invalid header field value for %q", k)
				}
			}
		}
	}
	return nil
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

func writeRequestHead(bw *bufio.Writer, req *http.Request, chunked bool, body io.Reader) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	uri := req.URL.RequestURI()
	bw.WriteString(req.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if ua := req.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		bw.WriteString("User-Agent: ")
		bw.WriteString(ua[0])
		bw.WriteString("\r\n")
	}
	for k, vs := range req.Header {
		if reqSkip(k) {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(strings.TrimSpace(v))
			bw.WriteString("\r\n")
		}
	}
	switch {
	case body == nil:
		if bodyExpected(req.Method) {
			bw.WriteString("Content-Length: 0\r\n")
		}
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(req.Trailer) > 0 {
			bw.WriteString("Trailer: ")
			i := 0
			for k := range req.Trailer {
				if i > 0 {
					bw.WriteString(", ")
				}
				bw.WriteString(k)
				i++
			}
			bw.WriteString("\r\n")
		}
	default:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(req.ContentLength, 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
}

// writeRequestBody sends the body (and, chunked, the request's trailers),
// flushing as data comes so that streams stream. It closes req.Body.
func writeRequestBody(pc *h1Conn, req *http.Request, body io.Reader, chunked bool) (err error) {
	defer closeBody(req)
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := (*bp)[:min(len(*bp), h1BufSize-64)]
	var sent int64
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if !chunked && sent+int64(n) > req.ContentLength {
				return fmt.Errorf("request body longer than its Content-Length %d", req.ContentLength)
			}
			sent += int64(n)
			if chunked {
				pc.bw.WriteString(strconv.FormatInt(int64(n), 16))
				pc.bw.WriteString("\r\n")
			}
			pc.bw.Write(buf[:n])
			if chunked {
				pc.bw.WriteString("\r\n")
			}
			if err := pc.bw.Flush(); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("read request body: %w", rerr)
		}
	}
	if !chunked {
		if sent != req.ContentLength {
			return fmt.Errorf("request body of %d bytes, Content-Length %d: %w", sent, req.ContentLength, io.ErrUnexpectedEOF)
		}
		return nil
	}
	pc.bw.WriteString("0\r\n")
	// The trailers are read only now: the client's arrive with the end of
	// its body (replayBody copies them into req.Trailer at EOF).
	for k, vs := range req.Trailer {
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vs {
			if httpguts.ValidHeaderFieldValue(v) {
				pc.bw.WriteString(k)
				pc.bw.WriteString(": ")
				pc.bw.WriteString(v)
				pc.bw.WriteString("\r\n")
			}
		}
	}
	pc.bw.WriteString("\r\n")
	return pc.bw.Flush()
}

// readResponseHead reads the status line and fields of the final response,
// skipping interim 1xx responses (RFC 9110 §15.2). The response and its
// body are one allocation.
func readResponseHead(pc *h1Conn, req *http.Request) (*h1Body, error) {
	for {
		head, scratch, err := readH1Head(pc.br, pc.scratch)
		pc.scratch = scratch[:0]
		if err != nil {
			return nil, err
		}
		line, fields, _ := strings.Cut(head, "\n")
		line = strings.TrimSuffix(line, "\r")
		proto, rest, ok1 := strings.Cut(line, " ")
		code, _, _ := strings.Cut(rest, " ")
		major, minor, ok2 := http.ParseHTTPVersion(proto)
		status, err := strconv.Atoi(code)
		if !ok1 || !ok2 || major != 1 || err != nil || len(code) != 3 || status < 100 {
			return nil, fmt.Errorf("malformed HTTP response %q", line)
		}
		if status < 200 && status != http.StatusSwitchingProtocols {
			continue
		}
		if status == http.StatusSwitchingProtocols {
			return nil, errors.New("unexpected 101 Switching Protocols")
		}
		h, err := parseH1Fields(fields)
		if err != nil {
			return nil, fmt.Errorf("response header: %w", err)
		}
		b := &h1Body{}
		b.res = http.Response{
			Status: rest, StatusCode: status, Proto: proto, ProtoMajor: major, ProtoMinor: minor,
			Header: h, Request: req, ContentLength: -1, Body: b,
		}
		return b, nil
	}
}

// h1Body is a response body read straight from the connection. At its end
// it reads the trailers of a chunked body; Close gives the connection back
// when the exchange ended cleanly both ways, else closes it.
type h1Body struct {
	res      http.Response
	t        *h1Client
	pc       *h1Conn
	stop     func() bool
	wdone    chan error
	r        io.Reader // the framed body
	lr       io.LimitedReader
	chunked  bool
	eof      bool
	reusable bool
	closed   bool
}

// frame sets the body's framing from the response head (RFC 9112 §6.3).
func (b *h1Body) frame(req *http.Request) error {
	res, h := &b.res, b.res.Header
	b.reusable = !(res.ProtoMinor == 0 && !headerHasToken(h, "Connection", "keep-alive")) &&
		!headerHasToken(h, "Connection", "close")
	if te := h["Transfer-Encoding"]; len(te) > 0 {
		if len(te) != 1 || !strings.EqualFold(strings.TrimSpace(te[0]), "chunked") {
			return fmt.Errorf("unsupported Transfer-Encoding %q", te)
		}
		delete(h, "Transfer-Encoding")
		if _, ok := h["Content-Length"]; ok {
			// §6.3 item 3: chunked wins, and the message may be an
			// attempt at smuggling: close after it.
			delete(h, "Content-Length")
			b.reusable = false
		}
		res.TransferEncoding = []string{"chunked"}
	}
	if tr := h["Trailer"]; len(tr) > 0 {
		res.Trailer = http.Header{}
		for _, v := range tr {
			for k := range strings.SplitSeq(v, ",") {
				if k = strings.TrimSpace(k); k != "" {
					res.Trailer[textproto.CanonicalMIMEHeaderKey(k)] = nil
				}
			}
		}
		delete(h, "Trailer")
	}
	noBody := req.Method == http.MethodHead || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified
	if cl := h["Content-Length"]; len(cl) > 0 {
		for _, v := range cl[1:] {
			if v != cl[0] {
				return fmt.Errorf("conflicting Content-Length %q", cl)
			}
		}
		n, err := strconv.ParseInt(strings.TrimSpace(cl[0]), 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("bad Content-Length %q", cl[0])
		}
		res.ContentLength = n
	}
	switch {
	case noBody:
		b.r, b.eof = strings.NewReader(""), true
		if req.Method != http.MethodHead {
			res.ContentLength = 0
		}
	case res.TransferEncoding != nil:
		b.r, b.chunked = httputil.NewChunkedReader(b.pc.br), true
		res.ContentLength = -1
	case res.ContentLength >= 0:
		b.lr = io.LimitedReader{R: b.pc.br, N: res.ContentLength}
		b.r = &b.lr
		b.eof = res.ContentLength == 0
	default:
		// Delimited by the close of the connection (§6.3 item 8).
		b.r = b.pc.br
		b.reusable = false
	}
	if b.eof {
		b.finish()
	}
	return nil
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.closed {
		return 0, errors.New("read on closed response body")
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		if lr, ok := b.r.(*io.LimitedReader); ok && lr.N > 0 {
			b.reusable = false
			return n, io.ErrUnexpectedEOF
		}
		if b.chunked {
			// Trailer section after the last chunk (RFC 9112 §7.1.2).
			head, scratch, terr := readH1Head(b.pc.br, b.pc.scratch)
			b.pc.scratch = scratch[:0]
			var tr http.Header
			if terr == nil {
				tr, terr = parseH1Fields(head)
			}
			if terr != nil {
				b.reusable = false
				return n, fmt.Errorf("read trailers: %w", terr)
			}
			if len(tr) > 0 && b.res.Trailer == nil {
				b.res.Trailer = http.Header{}
			}
			for k, v := range tr {
				b.res.Trailer[k] = v
			}
		} else if b.r == io.Reader(b.pc.br) {
			b.reusable = false
		}
		b.eof = true
		b.finish()
		return n, io.EOF
	}
	if lr, ok := b.r.(*io.LimitedReader); ok && err == nil && lr.N == 0 {
		b.eof = true
		b.finish()
		return n, io.EOF
	}
	if err != nil {
		b.reusable = false
	}
	return n, err
}

// finish gives the connection back once the body and the request are both
// through; it runs at the body's end, before the caller's Close, so the
// connection is free for the next request as soon as it can be.
func (b *h1Body) finish() {
	if b.pc == nil {
		return
	}
	pc := b.pc
	b.pc = nil
	ok := b.stop() && b.reusable
	if b.wdone != nil {
		// The upstream answered before the whole request body went out:
		// the connection carries an unfinished request, so it closes,
		// and the writer ends at its next write.
		select {
		case werr := <-b.wdone:
			ok = ok && werr == nil
		default:
			_ = pc.c.Close()
			return
		}
	}
	if ok {
		b.t.put(pc)
		return
	}
	_ = pc.c.Close()
}

func (b *h1Body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.pc != nil {
		// Closed before its end: what is left on the connection cannot be
		// told from the next response.
		b.reusable = false
		b.finish()
	}
	return nil
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
