package l7

import (
	"net/http"
	"regexp"
)

// transformer applies a route's Transforms.
type transformer struct {
	t           Transforms
	stripPrefix string // normal form of t.StripPrefix; "" for none
	pathRe      *regexp.Regexp
}

func newTransformer(t Transforms) (*transformer, error) {
	tr := &transformer{t: t}
	if t.StripPrefix != "" {
		tr.stripPrefix = normalizePath(t.StripPrefix)
	}
	if t.PathRegex != "" {
		re, err := regexp.Compile(t.PathRegex)
		if err != nil {
			return nil, err
		}
		tr.pathRe = re
	}
	return tr, nil
}

// request rewrites the outgoing request's path, host and headers. The
// request's path must already be normal (see normalizePath).
func (tr *transformer) request(out *http.Request) {
	if tr.stripPrefix != "" || tr.pathRe != nil {
		setEscapedPath(out.URL, tr.rewritePath(out.URL.EscapedPath()))
	}
	if tr.t.Host != "" {
		out.Host = tr.t.Host
	}
	tr.t.RequestHeaders.apply(out.Header)
}

// rewritePath applies StripPrefix, then PathRegex, to a normal path. Both
// see and produce the escaped form, so "%2F" stays data. A replacement can
// spell anything, dot segments included, so its result is normalised
// again: no rewrite hands the upstream a "." or ".." segment.
func (tr *transformer) rewritePath(p string) string {
	if tr.stripPrefix != "" {
		p, _ = stripPathPrefix(p, tr.stripPrefix)
	}
	if tr.pathRe != nil {
		p = normalizePath(tr.pathRe.ReplaceAllString(p, tr.t.PathReplacement))
	}
	return p
}

// response edits the headers sent to the client.
func (tr *transformer) response(h http.Header) {
	tr.t.ResponseHeaders.apply(h)
}

func (o HeaderOps) apply(h http.Header) {
	for _, k := range o.Remove {
		h.Del(k)
	}
	for k, v := range o.Set {
		h.Set(k, v)
	}
	for k, v := range o.Add {
		h.Add(k, v)
	}
}
