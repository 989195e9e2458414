// Package wstest is a WebSocket client for tests that speaks RFC 6455
// frames itself over any stream: the tunnel of an extended CONNECT (RFC
// 8441 over HTTP/2, RFC 9220 over HTTP/3), which no Go WebSocket library
// dials. It is test-only code: it sends one frame per message and expects
// unfragmented frames, as the echo servers of spooky's tests send.
package wstest

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// maxFrame bounds a frame the client accepts.
const maxFrame = 1 << 24

// CloseError is a close frame received from the peer (RFC 6455 §5.5.1).
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string { return fmt.Sprintf("close frame %d %q", e.Code, e.Reason) }

// Conn is a client's WebSocket over a stream.
type Conn struct {
	br         *bufio.Reader
	w          io.Writer
	closeWrite func() error
	mu         sync.Mutex // serialises frames and sentClose
	sentClose  bool
}

// New returns a Conn reading r and writing w; closeWrite ends w's half of
// the stream after the closing handshake.
func New(r io.Reader, w io.Writer, closeWrite func() error) *Conn {
	return &Conn{br: bufio.NewReader(r), w: w, closeWrite: closeWrite}
}

// writeFrame sends one final frame; a client masks its frames (§5.3).
func (c *Conn) writeFrame(op byte, payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b = append(b, mask[:]...)
	for i, x := range payload {
		b = append(b, x^mask[i%4])
	}
	_, err := c.w.Write(b)
	return err
}

func (c *Conn) readFrame() (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("server frame is masked (RFC 6455 §5.1 forbids it)")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var x [2]byte
		if _, err := io.ReadFull(c.br, x[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(x[:]))
	case 127:
		var x [8]byte
		if _, err := io.ReadFull(c.br, x[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(x[:])
	}
	if n > maxFrame {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 {
		return 0, nil, errors.New("fragmented frame")
	}
	return h[0] & 0x0f, payload, nil
}

// Send sends one binary message.
func (c *Conn) Send(msg []byte) error { return c.writeFrame(opBinary, msg) }

// Recv returns the next data message, answering pings. A close frame from
// the peer is answered (§5.5.1) and returned as a *CloseError; the stream
// ending without one is another error.
func (c *Conn) Recv() ([]byte, error) {
	for {
		op, p, err := c.readFrame()
		if err != nil {
			return nil, err
		}
		switch op {
		case opPing:
			if err := c.writeFrame(opPong, p); err != nil {
				return nil, err
			}
		case opPong:
		case opClose:
			e := &CloseError{Code: 1005}
			if len(p) >= 2 {
				e.Code, e.Reason = int(binary.BigEndian.Uint16(p)), string(p[2:])
			}
			c.mu.Lock()
			reply := !c.sentClose
			c.sentClose = true
			c.mu.Unlock()
			if reply {
				_ = c.writeFrame(opClose, p[:min(len(p), 2)])
			}
			return nil, e
		default:
			return p, nil
		}
	}
}

// Close runs the closing handshake (§7.1.2): it sends a close frame with
// code and reason, waits for the peer's, and then for the stream to end
// (the server closes first, §7.1.1).
func (c *Conn) Close(code int, reason string) error {
	c.mu.Lock()
	c.sentClose = true
	c.mu.Unlock()
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	if err := c.writeFrame(opClose, append(p, reason...)); err != nil {
		return err
	}
	for {
		_, err := c.Recv()
		if e, ok := errors.AsType[*CloseError](err); ok {
			if e.Code != code {
				return fmt.Errorf("peer answered close %d with %d", code, e.Code)
			}
			if _, err := c.br.ReadByte(); err != io.EOF {
				return fmt.Errorf("after the closing handshake the stream did not end cleanly: %v", err)
			}
			// The server may have stopped reading already (an HTTP/3
			// server's STOP_SENDING when its handler returns).
			_ = c.closeWrite()
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// CloseCode is the code of the close frame err reports, or -1.
func CloseCode(err error) int {
	if e, ok := errors.AsType[*CloseError](err); ok {
		return e.Code
	}
	return -1
}
