package l7

import (
	"net/url"
	"strings"
)

// Request paths are routed and forwarded in one normal form, RFC 3986 §6.2.2,
// kept in its escaped spelling:
//
//   - percent-encodings of unreserved characters (§2.3: ALPHA, DIGIT, "-",
//     ".", "_", "~") are decoded, so "/%70ublic" is "/public" and "%2E" is a
//     dot that takes part in dot-segment removal;
//   - every other percent-encoding is kept, in upper case (§6.2.2.1): "%2F"
//     stays a byte of a segment, never a separator, and is forwarded encoded;
//   - bytes a path may not carry raw (§3.3) are percent-encoded, as is a "%"
//     that starts no valid encoding;
//   - dot segments are removed (§5.2.4), so "/public/../private" is
//     "/private" and no normal path holds a "." or ".." segment.
//
// Routes match this form, rewrites work on it, and the upstream receives it
// with the encoding preserved (URL.RawPath), so the path a route matched is
// the path the upstream resolves.

// normalizePath returns the normal form of an escaped absolute path (as
// url.URL.EscapedPath returns it). A path without a leading "/" gets one,
// except the asterisk-form "*" of OPTIONS (RFC 9112 §3.2.4), kept as is.
// Applied to its own output it returns it unchanged.
func normalizePath(p string) string {
	if p == "*" {
		return p
	}
	if isNormalPath(p) {
		return p
	}
	b := make([]byte, 0, len(p)+8)
	if !strings.HasPrefix(p, "/") {
		b = append(b, '/')
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]):
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			if isUnreserved(v) {
				b = append(b, v)
			} else {
				b = appendPercent(b, v)
			}
			i += 2
		case c != '%' && isPathByte(c):
			b = append(b, c)
		default:
			b = appendPercent(b, c)
		}
	}
	return removeDotSegments(string(b))
}

// isNormalPath is normalizePath's fast path: most request paths are
// already normal and are returned without allocating.
func isNormalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' || !isPathByte(c) {
			return false
		}
		if c == '.' && p[i-1] == '/' {
			// "/." or "/.." ending the path or followed by "/".
			rest := p[i+1:]
			if rest == "" || rest[0] == '/' || rest == "." || strings.HasPrefix(rest, "./") {
				return false
			}
		}
	}
	return true
}

// removeDotSegments is RFC 3986 §5.2.4 for an absolute path, one segment
// at a time: "." is dropped, ".." drops the segment before it (never
// climbing above the root), and either one ending the path leaves a
// trailing "/".
func removeDotSegments(p string) string {
	segs := strings.Split(p[1:], "/")
	out := segs[:0]
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "")
		}
	}
	return "/" + strings.Join(out, "/")
}

// stripPathPrefix removes prefix (a normal path; trailing slashes do not
// count) from the normal path p at a segment boundary; what is left is a
// normal path too, since it starts where a segment begins. ok is false when
// p is not under prefix.
func stripPathPrefix(p, prefix string) (rest string, ok bool) {
	prefix = strings.TrimRight(prefix, "/")
	if !pathHasPrefix(p, prefix) {
		return p, false
	}
	rest = p[len(prefix):]
	if rest == "" {
		rest = "/"
	}
	return rest, true
}

// setEscapedPath makes u carry the escaped path p: RawPath keeps its
// encoding (so "%2F" is forwarded as sent, never as a separator) and Path
// is its decoded form, as url.URL requires for RawPath to be used.
func setEscapedPath(u *url.URL, p string) {
	if u.EscapedPath() == p {
		return
	}
	dec, err := url.PathUnescape(p)
	if err != nil {
		// Not reached for a normal path, whose every "%" starts a valid
		// encoding; keep the encoded form rather than guess.
		dec = p
	}
	// RawPath is set even when it equals Path: url.URL would otherwise
	// escape sub-delims such as "!", and "%21" is not "!" (RFC 3986 §2.2).
	u.Path, u.RawPath = dec, p
}

// isPathByte reports bytes a path may carry unencoded: pchar (RFC 3986
// §3.3: unreserved, sub-delims, ":", "@") and the "/" separator.
func isPathByte(c byte) bool {
	if isUnreserved(c) {
		return true
	}
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/':
		return true
	}
	return false
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func appendPercent(b []byte, c byte) []byte {
	const hex = "0123456789ABCDEF"
	return append(b, '%', hex[c>>4], hex[c&15])
}
