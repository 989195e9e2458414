package l7

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// maxH1HeadBytes bounds an upstream's response head (status line and
// fields) or trailer section, as net/http's Transport bounds them
// (MaxResponseHeaderBytes, 10 MB there; a megabyte is plenty here).
const maxH1HeadBytes = 1 << 20

// errH1HeadTooLarge is a response head past maxH1HeadBytes.
var errH1HeadTooLarge = errors.New("response head too large")

// readH1Head reads lines up to and including the empty line that ends a
// head (RFC 9112 §2.1) into scratch and returns them as one string, the
// only allocation: the fields parsed from it are substrings of it.
func readH1Head(br *bufio.Reader, scratch []byte) (string, []byte, error) {
	buf := scratch[:0]
	lineStart := 0
	for {
		frag, err := br.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > maxH1HeadBytes {
			return "", buf, errH1HeadTooLarge
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", buf, err
		}
		line := buf[lineStart:]
		if len(line) == 1 || (len(line) == 2 && line[0] == '\r') {
			return string(buf), buf, nil
		}
		lineStart = len(buf)
	}
}

// parseH1Fields parses the field lines of head into a header with canonical keys. Values share one backing
// array; keys already canonical, as nearly every server sends them, are
// substrings of head too.
func parseH1Fields(head string) (http.Header, error) {
	n := strings.Count(head, "\n") - 1
	if n <= 0 {
		return http.Header{}, nil
	}
	h := make(http.Header, n)
	vals := make([]string, 0, n)
	for rest := head; rest != ""; {
		var line string
		line, rest, _ = strings.Cut(rest, "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: RFC 9112 §5.2 lets a proxy refuse the message.
			return nil, fmt.Errorf("obsolete line folding in field %q", line)
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !httpguts.ValidHeaderFieldName(name) {
			return nil, fmt.Errorf("malformed field line %q", line)
		}
		value = strings.Trim(value, " \t")
		if !httpguts.ValidHeaderFieldValue(value) {
			return nil, fmt.Errorf("invalid value in field %q", name)
		}
		key := name
		if !isCanonicalKey(name) {
			key = textproto.CanonicalMIMEHeaderKey(name)
		}
		if prior, dup := h[key]; dup {
			h[key] = append(prior, value)
			continue
		}
		vals = append(vals, value)
		h[key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	return h, nil
}

// isCanonicalKey reports a field name already in the form
// textproto.CanonicalMIMEHeaderKey gives it.
func isCanonicalKey(s string) bool {
	upper := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case upper && 'a' <= c && c <= 'z':
			return false
		case !upper && 'A' <= c && c <= 'Z':
			return false
		}
		upper = c == '-'
	}
	return true
}
