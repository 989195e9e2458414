package l7

import (
	"net/http"
	"regexp"
	"strings"
)

// transformer applies a route's Transforms.
type transformer struct {
	t      Transforms
	pathRe *regexp.Regexp
}

func newTransformer(t Transforms) (*transformer, error) {
	tr := &transformer{t: t}
	if t.PathRegex != "" {
		re, err := regexp.Compile(t.PathRegex)
		if err != nil {
			return nil, err
		}
		tr.pathRe = re
	}
	return tr, nil
}

// request rewrites the outgoing request's path, host and headers.
func (tr *transformer) request(out *http.Request) {
	if p := tr.t.StripPrefix; p != "" && pathHasPrefix(out.URL.Path, strings.TrimSuffix(p, "/")) {
		rest := strings.TrimPrefix(out.URL.Path, strings.TrimSuffix(p, "/"))
		if !strings.HasPrefix(rest, "/") {
			rest = "/" + rest
		}
		out.URL.Path = rest
		out.URL.RawPath = ""
	}
	if tr.pathRe != nil {
		out.URL.Path = tr.pathRe.ReplaceAllString(out.URL.Path, tr.t.PathReplacement)
		out.URL.RawPath = ""
	}
	if tr.t.Host != "" {
		out.Host = tr.t.Host
	}
	tr.t.RequestHeaders.apply(out.Header)
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
