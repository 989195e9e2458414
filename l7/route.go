package l7

import (
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// compiledRoute is a Route with its expressions compiled and pool resolved.
type compiledRoute struct {
	name       string
	hosts      []string // lower case; "*.x" wildcards kept as is
	prefix     string
	exact      string
	pathRe     *regexp.Regexp
	methods    []string
	headers    []compiledHeaderMatch
	pool       *Pool
	timeout    time.Duration
	retry      RetryConfig
	transforms *transformer
	tunnel     *compiledTunnel
}

type compiledHeaderMatch struct {
	name  string
	value string
	re    *regexp.Regexp
}

// router holds a service's routes in order.
type router struct {
	routes []*compiledRoute
}

func compileRoutes(routes []Route, pools map[string]*Pool) (*router, error) {
	rt := &router{}
	for i, r := range routes {
		cr := &compiledRoute{
			name:    r.Name,
			prefix:  r.Match.PathPrefix,
			exact:   r.Match.PathExact,
			methods: r.Match.Methods,
			pool:    pools[r.Pool],
			timeout: r.Timeout,
			retry:   r.Retry.withDefaults(),
		}
		if cr.name == "" {
			cr.name = fmt.Sprintf("route-%d", i)
		}
		if cr.pool == nil {
			return nil, configErr("route %s: unknown pool %q", cr.name, r.Pool)
		}
		if cr.timeout == 0 {
			cr.timeout = DefaultRouteTimeout
		}
		// Requests are matched in normal form; so are the paths they are
		// matched against, or "/café" could never match.
		if cr.prefix != "" {
			cr.prefix = normalizePath(cr.prefix)
		}
		if cr.exact != "" {
			cr.exact = normalizePath(cr.exact)
		}
		for _, h := range r.Match.Hosts {
			cr.hosts = append(cr.hosts, strings.ToLower(strings.TrimSuffix(h, ".")))
		}
		if r.Match.PathRegex != "" {
			re, err := regexp.Compile(r.Match.PathRegex)
			if err != nil {
				return nil, configErr("route %s: path regex: %v", cr.name, err)
			}
			cr.pathRe = re
		}
		for _, h := range r.Match.Headers {
			m := compiledHeaderMatch{name: http.CanonicalHeaderKey(h.Name), value: h.Value}
			if h.Regex != "" {
				re, err := regexp.Compile(h.Regex)
				if err != nil {
					return nil, configErr("route %s: header %s regex: %v", cr.name, h.Name, err)
				}
				m.re = re
			}
			cr.headers = append(cr.headers, m)
		}
		t, err := newTransformer(r.Transforms)
		if err != nil {
			return nil, configErr("route %s: %v", cr.name, err)
		}
		cr.transforms = t
		if cr.tunnel, err = compileTunnel(r.Tunnel); err != nil {
			return nil, configErr("route %s: %v", cr.name, err)
		}
		rt.routes = append(rt.routes, cr)
	}
	return rt, nil
}

// match returns the first route matching r, whose path in normal form
// (normalizePath) is path, or nil.
func (rt *router) match(r *http.Request, path string) *compiledRoute {
	host := requestHost(r)
	for _, cr := range rt.routes {
		if cr.matches(r, host, path) {
			return cr
		}
	}
	return nil
}

// requestHost is the request's host without port, lower case.
func requestHost(r *http.Request) string {
	h := r.Host
	// Only a port after any IPv6 literal is worth splitting off; calling
	// SplitHostPort on a bare name would allocate an error per request.
	if strings.LastIndexByte(h, ':') > strings.LastIndexByte(h, ']') {
		if hh, _, err := net.SplitHostPort(h); err == nil {
			h = hh
		}
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func (cr *compiledRoute) matches(r *http.Request, host, path string) bool {
	if len(cr.hosts) > 0 && !slices.ContainsFunc(cr.hosts, func(p string) bool { return hostMatches(p, host) }) {
		return false
	}
	if cr.exact != "" && path != cr.exact {
		return false
	}
	if cr.prefix != "" && !pathHasPrefix(path, cr.prefix) {
		return false
	}
	if cr.pathRe != nil && !cr.pathRe.MatchString(path) {
		return false
	}
	if len(cr.methods) > 0 && !slices.Contains(cr.methods, r.Method) {
		return false
	}
	for _, h := range cr.headers {
		vals := r.Header.Values(h.name)
		if len(vals) == 0 {
			return false
		}
		if h.value == "" && h.re == nil {
			continue
		}
		if !slices.ContainsFunc(vals, func(v string) bool {
			return (h.value == "" || v == h.value) && (h.re == nil || h.re.MatchString(v))
		}) {
			return false
		}
	}
	return true
}

// hostMatches compares a pattern ("a.example.com" or "*.example.com", the
// wildcard covering exactly one label as in RFC 6125 §6.4.3) with a host.
func hostMatches(pattern, host string) bool {
	if rest, ok := strings.CutPrefix(pattern, "*."); ok {
		_, hrest, ok := strings.Cut(host, ".")
		return ok && hrest == rest
	}
	return pattern == host
}

// pathHasPrefix matches at segment boundaries: "/api" matches "/api" and
// "/api/x" but not "/apix". A prefix ending in "/" matches anything under it.
func pathHasPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || strings.HasSuffix(prefix, "/") || path[len(prefix)] == '/'
}
