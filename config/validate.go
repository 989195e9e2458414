package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/spooky-lb/spooky/bpf"
)

// maglevPerBackend is the table size per backend below which Maglev's
// imbalance grows past about 1% (Maglev paper, NSDI '16, §3.4 and §5.3).
// A smaller table is an error, not a warning: the fix (a larger prime) is
// cheap and the symptom (uneven load) is hard to trace back to the config.
const maglevPerBackend = 100

// validator checks a decoded, defaulted Config. It reports every problem,
// each at the position of the node that causes it.
type validator struct {
	file   string
	ix     *index
	failed map[string]bool // paths the decoder already reported
	errs   Errors
}

func (v *validator) report(p pos, path, format string, args ...any) {
	for q := path; ; q = parent(q) {
		if v.failed[q] {
			return // decoding this value failed; its zero value says nothing new
		}
		if q == "" {
			break
		}
	}
	v.errs = append(v.errs, &Error{File: v.file, Line: p.line, Col: p.col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// errorf reports a problem with the value at path (or, if it is missing,
// at its enclosing node).
func (v *validator) errorf(path, format string, args ...any) {
	v.report(v.ix.at(path), path, format, args...)
}

// keyErrorf reports a field that should not be there, at its key.
func (v *validator) keyErrorf(path, format string, args ...any) {
	v.report(v.ix.atKey(path), path, format, args...)
}

// loc names where path was written, for "first at" notes.
func (v *validator) loc(path string) string {
	if p, ok := v.ix.val[path]; ok {
		return fmt.Sprintf("%d:%d", p.line, p.col)
	}
	return path
}

func (v *validator) missing(path string) {
	if v.ix.present(path) {
		v.errorf(path, "%s: must not be empty", fieldName(path)) // written, as "" or []
		return
	}
	v.errorf(path, "missing required field %q", fieldName(path))
}

func (v *validator) positive(path string, n int) {
	if n <= 0 {
		v.errorf(path, "%s: must be positive, got %d", fieldName(path), n)
	}
}

func (v *validator) positiveDur(path string, d time.Duration) {
	if d <= 0 {
		v.errorf(path, "%s: must be positive, got %v", fieldName(path), d)
	}
}

func (v *validator) nonNegative(path string, n int) {
	if n < 0 {
		v.errorf(path, "%s: must not be negative, got %d", fieldName(path), n)
	}
}

// port checks a port; a zero port the file left out is missing if required
// and means "unset" otherwise.
func (v *validator) port(path string, port int, required bool) {
	switch {
	case port == 0 && !v.ix.present(path):
		if required {
			v.missing(path)
		}
	case port < 1 || port > 65535:
		v.errorf(path, "%s: %d is out of range 1..65535", fieldName(path), port)
	}
}

func oneOf[T ~string](v *validator, path string, val T, allowed ...T) {
	if slices.Contains(allowed, val) {
		return
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	v.errorf(path, "%s: %q is not one of %s", fieldName(path), echo(string(val)), strings.Join(names, ", "))
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// name checks a service, backend or pool name, which appears in metrics
// labels, admin API paths and pinned map paths.
func (v *validator) name(path, name string) {
	switch {
	case name == "":
		v.missing(path)
	case !namePattern.MatchString(name):
		v.errorf(path, "%s: %q must be 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", fieldName(path), echo(name))
	}
}

// thisNetwork is 0.0.0.0/8, "this host on this network": a source address
// only, never a destination (RFC 1122 §3.2.1.3 (a), (b)).
var thisNetwork = netip.MustParsePrefix("0.0.0.0/8")

// unicast checks a VIP or backend address and reports whether it is a
// unicast address, one that names a single host.
func (v *validator) unicast(path string, a netip.Addr) bool {
	why := ""
	switch {
	case !a.IsValid():
		v.missing(path)
		return false
	case a.Zone() != "":
		v.errorf(path, "%s: %s has a zone; zones are not supported", fieldName(path), echo(a.String()))
		return false
	case a.Is4In6():
		v.errorf(path, "%s: write the IPv4-mapped address %s as %s", fieldName(path), a, a.Unmap())
		return false
	case a.IsUnspecified():
		why = "it is the unspecified address, which names no host (RFC 1122 §3.2.1.3, RFC 4291 §2.5.2)"
	case a.IsMulticast():
		why = "it is a multicast address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		why = "it is the limited broadcast address (RFC 919)"
	case thisNetwork.Contains(a):
		why = "0.0.0.0/8 is only ever a source address (RFC 1122 §3.2.1.3)"
	default:
		return true
	}
	v.errorf(path, "%s: %s is not a unicast address: %s", fieldName(path), a, why)
	return false
}

// backendAddr checks what an l4 backend's address must be beyond unicast:
// reachable the way the service forwards to it.
func (v *validator) backendAddr(path string, a netip.Addr, fwd Forwarding) {
	if !v.unicast(path, a) {
		return
	}
	switch {
	case a.IsLoopback() && fwd != ForwardingProxy:
		// XDP sends the packet out of the interface it arrived on; a
		// loopback address never leaves its host (RFC 1122 §3.2.1.3 (g),
		// RFC 4291 §2.5.3).
		v.errorf(path, "address: %s is a loopback address, which forwarding %s cannot reach: XDP sends packets out of the network interface", a, fwd)
	case a.Is6() && a.IsLinkLocalUnicast():
		// Without a zone, which spooky does not take, a link-local address
		// names no one interface (RFC 4007 §6).
		v.errorf(path, "address: %s is an IPv6 link-local address, which names a host only together with an interface; use a global or unique local address", a)
	case a.Is4() && a.IsLinkLocalUnicast() && fwd == ForwardingIPIP:
		// Routers do not forward packets to 169.254/16 (RFC 3927 §2.7), so
		// an encapsulated packet reaches it only on-link, which l2dsr does.
		v.errorf(path, "address: %s is an IPv4 link-local address, which routers do not forward (RFC 3927 §2.7); forwarding ipip cannot rely on reaching it, use l2dsr", a)
	}
}

func (v *validator) config(c *Config) {
	if v.failed == nil {
		v.failed = map[string]bool{}
	}
	oneOf(v, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(v, "log.format", c.Log.Format, "text", "json")
	v.admin(c.Admin)
	v.metrics(c.Metrics)
	v.proxy(c.Proxy)
	v.slowPath(c.SlowPath)

	pools := map[string]string{} // name → path
	for i := range c.Pools {
		p := fmt.Sprintf("pools[%d]", i)
		v.pool(&c.Pools[i], p)
		if n := c.Pools[i].Name; n != "" {
			if first, dup := pools[n]; dup {
				v.errorf(p+".name", "name: duplicate pool name %q (first at %s)", echo(n), v.loc(first))
			} else {
				pools[n] = p + ".name"
			}
		}
	}

	if len(c.Services) == 0 {
		v.errorf("services", "at least one service is required")
	}
	names := map[string]string{}
	vips := map[netip.AddrPort]string{}
	used := map[string]bool{}
	for i := range c.Services {
		s := &c.Services[i]
		p := fmt.Sprintf("services[%d]", i)
		v.service(s, p, pools, used)
		if s.Name != "" {
			if first, dup := names[s.Name]; dup {
				v.errorf(p+".name", "name: duplicate service name %q (first at %s)", echo(s.Name), v.loc(first))
			} else {
				names[s.Name] = p + ".name"
			}
		}
		if s.Address.IsValid() && s.Port > 0 {
			if first, dup := vips[s.AddrPort()]; dup {
				v.errorf(p+".port", "port: service %s is already defined (first at %s)", s.AddrPort(), v.loc(first))
			} else {
				vips[s.AddrPort()] = p + ".port"
			}
		}
	}
	v.capacity(c)
	v.bgp(c)
	for i, pl := range c.Pools {
		if pl.Name != "" && !used[pl.Name] {
			v.errorf(fmt.Sprintf("pools[%d].name", i), "name: pool %q is not used by any route", echo(pl.Name))
		}
	}
}

// capacity checks that the services and backends fit the XDP maps, which
// attach and reload would otherwise refuse: one VIP id per service (bpf.MaxVIPs)
// and one backend index per backend of an l4 service (bpf.MaxBackends).
// Services with forwarding: proxy stay out of the maps (the userspace
// forwarder serves them) and so do not count. Each limit is reported once, at
// the first entry past it.
func (v *validator) capacity(c *Config) {
	vips, backends := 0, 0
	for i := range c.Services {
		s := &c.Services[i]
		if !inXDP(s) {
			continue
		}
		p := fmt.Sprintf("services[%d]", i)
		if vips++; vips == bpf.MaxVIPs+1 {
			v.errorf(p, "services: the XDP maps hold %d services (l4 with forwarding proxy not counted) and this is one more", bpf.MaxVIPs)
		}
		if s.Mode != ModeL4 {
			continue
		}
		for j := range s.Backends {
			if backends++; backends == bpf.MaxBackends+1 {
				v.errorf(fmt.Sprintf("%s.backends[%d]", p, j), "backends: the XDP maps hold %d backends over all l4 services (forwarding proxy not counted) and this is one more", bpf.MaxBackends)
			}
		}
	}
}

// inXDP reports whether the XDP maps hold s: every service but an l4 one
// with forwarding proxy.
func inXDP(s *ServiceConfig) bool {
	return s.Mode != ModeL4 || s.Forwarding != ForwardingProxy
}

func (v *validator) admin(a AdminConfig) {
	if a.Socket != "" && a.Listen != "" {
		v.keyErrorf("admin.listen", "listen: set admin socket or listen, not both")
	}
	if a.Socket == "" && a.Listen == "" {
		v.errorf("admin", "admin: set socket or listen")
	}
	if a.Socket != "" && !filepath.IsAbs(a.Socket) {
		v.errorf("admin.socket", "socket: %q is not an absolute path", echo(a.Socket))
	} else if len(a.Socket) > 107 {
		// sun_path holds 108 bytes with the terminating NUL (unix(7)).
		v.errorf("admin.socket", "socket: path is %d bytes; a unix socket path holds at most 107", len(a.Socket))
	}
	if a.Listen != "" {
		host, ok := v.hostPort("admin.listen", a.Listen)
		if !ok {
			return
		}
		// IP literals only: what a name, even localhost, resolves to is
		// up to /etc/hosts and the resolver.
		ip, err := netip.ParseAddr(host)
		switch {
		case err != nil && host != "":
			v.errorf("admin.listen", "listen: %q is a name; write 127.0.0.1 or [::1] so the admin API cannot end up beyond loopback", echo(host))
		case err != nil || ip.Zone() != "" || ip.Is4In6() || !ip.IsLoopback():
			v.errorf("admin.listen", "listen: %q is not a loopback address; the admin API has no authentication, so it listens only on loopback or a unix socket", echo(host))
		}
	}
}

func (v *validator) metrics(m MetricsConfig) {
	if m.Listen != "" {
		if host, ok := v.hostPort("metrics.listen", m.Listen); ok && host != "" && host != "localhost" {
			if _, err := netip.ParseAddr(host); err != nil {
				v.errorf("metrics.listen", "listen: %q is not an IP address", echo(host))
			}
		}
	}
	if !strings.HasPrefix(m.Path, "/") {
		v.errorf("metrics.path", "path: %q does not start with /", echo(m.Path))
	}
}

// hostPort splits a listen address and checks its port.
func (v *validator) hostPort(path, hp string) (string, bool) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		v.errorf(path, "%s: %q is not host:port", fieldName(path), echo(hp))
		return "", false
	}
	if !validPort(port) {
		v.errorf(path, "%s: port %q is not a number in 1..65535", fieldName(path), echo(port))
		return "", false
	}
	return host, true
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func (v *validator) service(s *ServiceConfig, p string, pools map[string]string, used map[string]bool) {
	v.name(p+".name", s.Name)
	v.unicast(p+".address", s.Address)
	v.port(p+".port", s.Port, true)
	oneOf(v, p+".mode", s.Mode, ModeL4, ModeL7)
	sidLen := v.cids(s, p)

	// Fields of the other tier are errors, not silently ignored settings.
	type field struct {
		key string
		set bool
	}
	l4Only := []field{{"forwarding", s.Forwarding != ""}, {"hash", s.Hash != ""}, {"strict", s.Strict},
		{"maglev_size", s.MaglevSize != 0}, {"flow_timeout", s.FlowTimeout != 0}, {"backends", len(s.Backends) > 0},
		{"health_check", s.HealthCheck != nil}}
	l7Only := []field{{"tls", len(s.TLS) > 0}, {"l7_server_id", len(s.L7ServerID) > 0}, {"tcp_listener", s.TCPListener},
		{"allow_0rtt", s.Allow0RTT}, {"routes", len(s.Routes) > 0}}

	switch s.Mode {
	case ModeL4:
		for _, f := range l7Only {
			if f.set {
				v.keyErrorf(p+"."+f.key, "%s: only valid with mode l7", f.key)
			}
		}
		v.l4(s, p, sidLen)
	case ModeL7:
		for _, f := range l4Only {
			if f.set {
				v.keyErrorf(p+"."+f.key, "%s: only valid with mode l4", f.key)
			}
		}
		v.l7(s, p, sidLen, pools, used)
	}
}

// cids checks the service's QUIC-LB configs and returns the server ID
// length they share (0 if there are none or they disagree).
func (v *validator) cids(s *ServiceConfig, p string) int {
	ids := map[int]string{}
	sidLen := 0
	for i, c := range s.CID {
		cp := fmt.Sprintf("%s.cid[%d]", p, i)
		ok := true
		for _, f := range []struct {
			key string
			n   int
		}{{"server_id_len", c.ServerIDLen}, {"nonce_len", c.NonceLen}} {
			if f.n == 0 && !v.ix.present(cp+"."+f.key) {
				v.missing(cp + "." + f.key)
				ok = false
			}
		}
		if len(c.Key) != 0 && len(c.Key) != 16 {
			v.errorf(cp+".key", "key: must be 32 hex digits (AES-128), got %d", 2*len(c.Key))
			c.Key = nil // reported; don't let cid.Validate report it again
		}
		if first, dup := ids[c.ConfigID]; dup {
			v.errorf(cp+".config_id", "config_id: duplicate config_id %d (first at %s)", c.ConfigID, v.loc(first))
		} else {
			ids[c.ConfigID] = cp + ".config_id"
		}
		if ok {
			// The draft's rules live in package cid, once.
			if _, err := c.Config(); err != nil {
				v.errorf(cp, "cid: %v", err)
			}
		}
		switch {
		case i == 0:
			sidLen = c.ServerIDLen
		case c.ServerIDLen != sidLen && sidLen != 0:
			v.errorf(cp+".server_id_len", "server_id_len: %d differs from %d in the service's first cid config; a backend has one server ID for all configs", c.ServerIDLen, sidLen)
			sidLen = 0
		}
	}
	return sidLen
}

func (v *validator) l4(s *ServiceConfig, p string, sidLen int) {
	oneOf(v, p+".forwarding", s.Forwarding, ForwardingL2DSR, ForwardingIPIP, ForwardingProxy)
	oneOf(v, p+".hash", s.Hash, HashSrcIP, Hash4Tuple)
	v.positiveDur(p+".flow_timeout", s.FlowTimeout)
	if len(s.Backends) == 0 {
		v.errorf(p+".backends", "backends: mode l4 needs at least one backend")
	}
	switch m, least := s.MaglevSize, minMaglevSize(len(s.Backends)); {
	case m < 2 || m > bpf.MaglevMaxSize:
		v.errorf(p+".maglev_size", "maglev_size: %d is out of range 2..%d (the largest table the XDP maps hold)", m, bpf.MaglevMaxSize)
	case !isPrime(m):
		v.errorf(p+".maglev_size", "maglev_size: %d is not prime (Maglev needs a prime table size; try %d)", m, maglevSuggestion(m))
	case m < least && least == bpf.MaglevMaxSize:
		v.errorf(p+".maglev_size", "maglev_size: %d is less than %d × %d backends, which skews load; try %d, the largest table the XDP maps hold", m, maglevPerBackend, len(s.Backends), bpf.MaglevMaxSize)
	case m < least:
		v.errorf(p+".maglev_size", "maglev_size: %d is less than %d × %d backends, which skews load; try %d", m, maglevPerBackend, len(s.Backends), maglevSuggestion(least))
	}

	names := map[string]string{}
	addrs := map[netip.AddrPort]string{}
	sids := map[string]string{}
	for i, b := range s.Backends {
		bp := fmt.Sprintf("%s.backends[%d]", p, i)
		v.name(bp+".name", b.Name)
		if first, dup := names[b.Name]; dup && b.Name != "" {
			v.errorf(bp+".name", "name: duplicate backend name %q (first at %s)", echo(b.Name), v.loc(first))
		} else {
			names[b.Name] = bp + ".name"
		}
		v.backendAddr(bp+".address", b.Address, s.Forwarding)
		v.port(bp+".port", b.Port, false)
		if b.Port != 0 && b.Port != s.Port && s.Forwarding != ForwardingProxy {
			v.errorf(bp+".port", "port: forwarding %s cannot change the port (%d → %d); leave port out or use forwarding: proxy", s.Forwarding, s.Port, b.Port)
		}
		port := cmpOr(b.Port, s.Port)
		if b.Address.IsValid() {
			ap := netip.AddrPortFrom(b.Address, uint16(port))
			if first, dup := addrs[ap]; dup {
				v.errorf(bp+".address", "address: duplicate backend %s (first at %s)", ap, v.loc(first))
			} else {
				addrs[ap] = bp + ".address"
			}
		}
		v.positive(bp+".weight", b.Weight)

		sp := bp + ".server_id"
		switch {
		case len(s.CID) == 0 && len(b.ServerID) > 0:
			v.keyErrorf(sp, "server_id: the service has no cid configs to route by it")
		case len(s.CID) == 0:
		case len(b.ServerID) == 0:
			v.errorf(sp, "missing required field %q (the service has cid configs)", "server_id")
		case sidLen > 0 && len(b.ServerID) != sidLen:
			v.errorf(sp, "server_id: %s is %d octets; the service's cid configs have server_id_len %d", echo(b.ServerID.String()), len(b.ServerID), sidLen)
		default:
			if first, dup := sids[string(b.ServerID)]; dup {
				v.errorf(sp, "server_id: duplicate server_id %s (first at %s)", echo(b.ServerID.String()), v.loc(first))
			} else {
				sids[string(b.ServerID)] = sp
			}
		}
	}
	if s.HealthCheck != nil {
		v.healthCheck(s.HealthCheck, p+".health_check", true)
	}
}

// minMaglevSize is the smallest table for n backends: maglevPerBackend
// entries each, or the largest table the maps hold if that is less (a
// service of more than 655 backends gets fewer entries each, and somewhat
// less even load, rather than no table).
func minMaglevSize(n int) int {
	return min(maglevPerBackend*n, bpf.MaglevMaxSize)
}

// maglevSuggestion is the prime to suggest for a table of at least m
// entries: never past the largest table the maps hold, which is prime.
func maglevSuggestion(m int) int {
	return nextPrime(min(m, bpf.MaglevMaxSize))
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func (v *validator) l7(s *ServiceConfig, p string, sidLen int, pools map[string]string, used map[string]bool) {
	if len(s.TLS) == 0 {
		v.errorf(p+".tls", "tls: mode l7 terminates TLS and needs at least one certificate")
	}
	if len(s.Routes) == 0 {
		v.errorf(p+".routes", "routes: mode l7 needs at least one route")
	}
	switch sp := p + ".l7_server_id"; {
	case len(s.CID) == 0 && len(s.L7ServerID) > 0:
		v.keyErrorf(sp, "l7_server_id: the service has no cid configs")
	case len(s.CID) == 0:
	case len(s.L7ServerID) == 0:
		v.errorf(sp, "missing required field %q (the service has cid configs)", "l7_server_id")
	case sidLen > 0 && len(s.L7ServerID) != sidLen:
		v.errorf(sp, "l7_server_id: %s is %d octets; the service's cid configs have server_id_len %d", echo(s.L7ServerID.String()), len(s.L7ServerID), sidLen)
	}

	snis := map[string]string{}
	for i, t := range s.TLS {
		tp := fmt.Sprintf("%s.tls[%d]", p, i)
		if len(t.ServerNames) == 0 {
			v.missing(tp + ".server_names")
		}
		for j, n := range t.ServerNames {
			np := fmt.Sprintf("%s.server_names[%d]", tp, j)
			if !v.hostname(np, n) {
				continue
			}
			if first, dup := snis[strings.ToLower(n)]; dup {
				v.errorf(np, "server_names: duplicate server name %q (first at %s)", echo(n), v.loc(first))
			} else {
				snis[strings.ToLower(n)] = np
			}
		}
		v.keyPair(t, tp)
	}

	for i := range s.Routes {
		v.route(&s.Routes[i], fmt.Sprintf("%s.routes[%d]", p, i), pools, used)
	}
}

// hostname checks a DNS name, optionally a "*." wildcard, as SNI and Host
// carry it.
func (v *validator) hostname(path, name string) bool {
	if _, err := netip.ParseAddr(name); err == nil {
		v.errorf(path, "%s: %q is an IP address; TLS server names are DNS names (RFC 6066 §3)", fieldName(path), echo(name))
		return false
	}
	if !validHostname(strings.TrimPrefix(name, "*.")) {
		v.errorf(path, "%s: %q is not a DNS name", fieldName(path), echo(name))
		return false
	}
	return true
}

// isDNSName reports whether n is a DNS name, optionally a "*." wildcard,
// and not an IP address.
func isDNSName(n string) bool {
	_, err := netip.ParseAddr(n)
	return err != nil && validHostname(strings.TrimPrefix(n, "*."))
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// keyPair checks that the certificate and key exist, parse, match, and
// cover the entry's server names.
func (v *validator) keyPair(t TLSConfig, tp string) {
	ok := true
	var pems [2][]byte
	for i, f := range []struct{ key, file string }{{"cert", t.Cert}, {"key", t.Key}} {
		fp := tp + "." + f.key
		if f.file == "" {
			v.missing(fp)
			ok = false
			continue
		}
		pems[i] = v.pemFile(fp, f.key, f.file)
		ok = ok && pems[i] != nil
	}
	if !ok {
		return
	}
	pair, err := tls.X509KeyPair(pems[0], pems[1])
	if err != nil {
		v.errorf(tp+".cert", "cert: %s with key %s: %v", t.Cert, t.Key, err)
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		v.errorf(tp+".cert", "cert: %s: %v", t.Cert, err)
		return
	}
	for j, n := range t.ServerNames {
		probe := n
		if rest, wild := strings.CutPrefix(n, "*."); wild {
			probe = "spooky-wildcard-probe." + rest // covered only by a matching wildcard SAN
		}
		if isDNSName(n) && leaf.VerifyHostname(probe) != nil {
			v.errorf(fmt.Sprintf("%s.server_names[%d]", tp, j), "server_names: certificate %s does not cover %q", t.Cert, echo(n))
		}
	}
}

var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

func (v *validator) route(r *RouteConfig, rp string, pools map[string]string, used map[string]bool) {
	switch _, known := pools[r.Pool]; {
	case r.Pool == "":
		v.missing(rp + ".pool")
	case !known:
		v.errorf(rp+".pool", "pool: no pool named %q%s", echo(r.Pool), suggest(r.Pool, maps.Keys(pools)))
	default:
		used[r.Pool] = true
	}
	v.positiveDur(rp+".timeout", r.Timeout)
	v.tunnel(r, rp)

	m, mp := r.Match, rp+".match"
	if m.Host != "" {
		v.hostname(mp+".host", m.Host)
	}
	var paths []string
	for _, f := range []struct{ key, val string }{{"path_prefix", m.PathPrefix}, {"path_exact", m.PathExact}, {"path_regex", m.PathRegex}} {
		if f.val == "" {
			continue
		}
		paths = append(paths, f.key)
		if len(paths) > 1 {
			v.keyErrorf(mp+"."+f.key, "%s: set only one of path_prefix, path_exact and path_regex (%s is already set)", f.key, paths[0])
		}
	}
	for _, f := range []struct{ key, val string }{{"path_prefix", m.PathPrefix}, {"path_exact", m.PathExact}} {
		if f.val != "" && !strings.HasPrefix(f.val, "/") {
			v.errorf(mp+"."+f.key, "%s: %q does not start with /", f.key, echo(f.val))
		}
	}
	if m.PathRegex != "" {
		if _, err := regexp.Compile(m.PathRegex); err != nil {
			v.errorf(mp+".path_regex", "path_regex: %s", clip(err.Error(), maxSyntaxEcho))
		}
	}
	for i, meth := range m.Methods {
		xp := fmt.Sprintf("%s.methods[%d]", mp, i)
		switch {
		case !httpguts.ValidHeaderFieldName(meth): // a method is a token (RFC 9110 §9.1)
			v.errorf(xp, "methods: %q is not an HTTP method", echo(meth))
		case slices.Contains(httpMethods, strings.ToUpper(meth)) && meth != strings.ToUpper(meth):
			v.errorf(xp, "methods: %q never matches: methods are case-sensitive (RFC 9110 §9.1); write %q", echo(meth), echo(strings.ToUpper(meth)))
		}
	}
	v.headers(mp+".headers", m.Headers)

	t, tp := r.Transforms, rp+".transforms"
	v.headerOps(tp+".request_headers", t.RequestHeaders)
	v.headerOps(tp+".response_headers", t.ResponseHeaders)
	for _, f := range []struct{ key, val string }{{"strip_prefix", t.StripPrefix}, {"rewrite_path", t.RewritePath}} {
		if f.val != "" && !strings.HasPrefix(f.val, "/") {
			v.errorf(tp+"."+f.key, "%s: %q does not start with /", f.key, echo(f.val))
		}
	}
	if t.StripPrefix != "" && t.RewritePath != "" {
		v.keyErrorf(tp+".rewrite_path", "rewrite_path: set strip_prefix or rewrite_path, not both")
	}
	if t.Host != "" && !httpguts.ValidHostHeader(t.Host) {
		v.errorf(tp+".host", "host: %q is not a valid Host", echo(t.Host))
	}
}

func (v *validator) headers(path string, h map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if !httpguts.ValidHeaderFieldName(k) {
			v.keyErrorf(path+"."+k, "%s: %q is not a valid header name", fieldName(path), echo(k))
		} else if !httpguts.ValidHeaderFieldValue(h[k]) {
			v.errorf(path+"."+k, "%s: value of %s is not a valid header value", fieldName(path), echo(k))
		}
	}
}

func (v *validator) headerOps(path string, o HeaderOps) {
	v.headers(path+".set", o.Set)
	v.headers(path+".add", o.Add)
	for i, k := range o.Remove {
		if !httpguts.ValidHeaderFieldName(k) {
			v.errorf(fmt.Sprintf("%s.remove[%d]", path, i), "remove: %q is not a valid header name", echo(k))
		}
	}
}

func (v *validator) pool(pl *PoolConfig, p string) {
	v.name(p+".name", pl.Name)
	oneOf(v, p+".policy", pl.Policy, PolicyRandom, PolicyRoundRobin, PolicyWeightedRoundRobin,
		PolicyLeastConn, PolicyIPHash, PolicyLeastResponseTime, PolicyP2C)
	if len(pl.Upstreams) == 0 {
		v.errorf(p+".upstreams", "upstreams: a pool needs at least one upstream")
	}
	seen := map[string]string{}
	for i, u := range pl.Upstreams {
		up := fmt.Sprintf("%s.upstreams[%d]", p, i)
		if v.upstreamURL(up+".address", u.Address) {
			if first, dup := seen[u.Address]; dup {
				v.errorf(up+".address", "address: duplicate upstream %s (first at %s)", echo(u.Address), v.loc(first))
			} else {
				seen[u.Address] = up + ".address"
			}
		}
		v.positive(up+".weight", u.Weight)
		v.nonNegative(up+".max_conns", u.MaxConns)
		v.nonNegative(up+".max_requests", u.MaxRequests)
		if u.TLS.CA != "" {
			v.caFile(up+".tls.ca", u.TLS.CA)
		}
	}
	v.nonNegative(p+".retries.count", pl.Retries.Count)
	v.positiveDur(p+".retries.budget", pl.Retries.Budget)

	cb, cp := pl.CircuitBreaker, p+".circuit_breaker"
	v.positive(cp+".consecutive_failures", cb.ConsecutiveFailures)
	if cb.ErrorRatio <= 0 || cb.ErrorRatio > 1 {
		v.errorf(cp+".error_ratio", "error_ratio: %v is not in (0, 1]", cb.ErrorRatio)
	}
	v.positiveDur(cp+".window", cb.Window)
	if cb.LatencyThreshold < 0 {
		v.errorf(cp+".latency_threshold", "latency_threshold: must not be negative, got %v", cb.LatencyThreshold)
	}
	v.positiveDur(cp+".open_for", cb.OpenFor)
	v.positive(cp+".half_open_probes", cb.HalfOpenProbes)
	if pl.HealthCheck != nil {
		v.healthCheck(pl.HealthCheck, p+".health_check", false)
	}
}

var upstreamSchemes = []string{"http", "https", "h2c", "h3"}

// upstreamURL checks an upstream address and reports whether it is valid.
func (v *validator) upstreamURL(path, addr string) bool {
	if addr == "" {
		v.missing(path)
		return false
	}
	u, err := url.Parse(addr)
	switch {
	case err != nil:
		v.errorf(path, "address: %q is not a URL", echo(addr))
	case !slices.Contains(upstreamSchemes, u.Scheme):
		v.errorf(path, "address: %q: scheme must be one of %s", echo(addr), strings.Join(upstreamSchemes, ", "))
	case u.Hostname() == "":
		v.errorf(path, "address: %q has no host", echo(addr))
	case u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		v.errorf(path, "address: %q: only scheme://host[:port] is allowed", echo(addr))
	case u.Port() != "" && !validPort(u.Port()):
		v.errorf(path, "address: %q: port %s is out of range 1..65535", echo(addr), echo(u.Port()))
	default:
		if _, err := netip.ParseAddr(u.Hostname()); err != nil && !validHostname(u.Hostname()) {
			v.errorf(path, "address: %q: %q is neither an IP address nor a DNS name", echo(addr), echo(u.Hostname()))
			return false
		}
		return true
	}
	return false
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && isDigits(s) && n >= 1 && n <= 65535
}

// healthCheck checks an l4 service's (l4) or a pool's health check.
// Fields the check's type does not use are errors, not silently ignored.
func (v *validator) healthCheck(h *HealthCheckConfig, p string, l4 bool) {
	if h.Type == "" {
		v.missing(p + ".type")
	} else {
		oneOf(v, p+".type", h.Type, CheckHTTP3, CheckHTTPS, CheckHTTP, CheckTCP, CheckQUIC)
	}
	known := h.Type != ""
	onlyFor := func(key string, set, ok bool, types string) {
		if set && known && !ok {
			v.keyErrorf(p+"."+key, "%s: only %s checks use it", key, types)
		}
	}
	usesTLS := h.Type == CheckHTTPS || h.Type == CheckHTTP3 || h.Type == CheckQUIC
	if !l4 {
		// A pool's upstream scheme picks the transport, so an http check
		// of an https:// upstream speaks TLS and a tcp check of an h3://
		// upstream is a QUIC handshake (see HealthCheckConfig).
		usesTLS = known
	}
	onlyFor("path", h.Path != "", h.Type.IsHTTP(), "http, https and http3")
	onlyFor("host", h.Host != "", h.Type.IsHTTP(), "http, https and http3")
	onlyFor("expect_status", len(h.ExpectStatus) > 0, h.Type.IsHTTP(), "http, https and http3")
	onlyFor("body", h.Body != "", h.Type.IsHTTP(), "http, https and http3")
	onlyFor("alpn", h.ALPN != "", h.Type == CheckQUIC, "quic")
	onlyFor("server_name", h.ServerName != "", usesTLS, "https, http3 and quic")
	onlyFor("tls", h.TLS != (HealthCheckTLSConfig{}), usesTLS, "https, http3 and quic")

	switch {
	case !l4 && h.Address != "":
		v.keyErrorf(p+".address", "address: only l4 services choose where to probe; a pool probes each upstream's address")
	case l4:
		oneOf(v, p+".address", h.Address, CheckAddressVIP, CheckAddressBackend)
	}
	v.port(p+".port", h.Port, false)
	if h.Type.IsHTTP() {
		if !strings.HasPrefix(h.Path, "/") {
			v.errorf(p+".path", "path: %q does not start with /", echo(h.Path))
		}
		if h.Host != "" && !httpguts.ValidHostHeader(h.Host) {
			v.errorf(p+".host", "host: %q is not a valid Host", h.Host)
		}
		if len(h.ExpectStatus) == 0 {
			v.errorf(p+".expect_status", "expect_status: must list at least one status")
		}
		for i, st := range h.ExpectStatus {
			if _, err := ParseStatusRange(st); err != nil {
				v.errorf(fmt.Sprintf("%s.expect_status[%d]", p, i), "expect_status: %v", err)
			}
		}
		if h.Body != "" {
			if _, err := regexp.Compile(h.Body); err != nil {
				v.errorf(p+".body", "body: %v", err)
			}
		}
	}
	if h.Type == CheckQUIC {
		switch {
		case h.ALPN == "":
			v.errorf(p+".alpn", "alpn: must not be empty")
		case len(h.ALPN) > 255: // a protocol name is 1 to 255 octets (RFC 7301 §3.1)
			v.errorf(p+".alpn", "alpn: %d octets is longer than 255", len(h.ALPN))
		}
	}
	if h.ServerName != "" {
		if _, err := netip.ParseAddr(h.ServerName); err == nil || !validHostname(h.ServerName) {
			v.errorf(p+".server_name", "server_name: %q is not a DNS name; SNI carries DNS names only (RFC 6066 §3)", h.ServerName)
		}
	}
	if h.TLS.CA != "" {
		v.caFile(p+".tls.ca", h.TLS.CA)
		if h.TLS.InsecureSkipVerify {
			v.keyErrorf(p+".tls.insecure_skip_verify", "insecure_skip_verify: set ca or insecure_skip_verify, not both")
		}
	}
	v.positiveDur(p+".interval", h.Interval)
	v.positiveDur(p+".timeout", h.Timeout)
	if h.Interval > 0 && h.Timeout > h.Interval {
		v.errorf(p+".timeout", "timeout: %v exceeds interval %v; a probe must end before the next begins", h.Timeout, h.Interval)
	}
	if h.Jitter < 0 || h.Jitter > MaxCheckJitter {
		v.errorf(p+".jitter", "jitter: %v is not in [0, %v]", h.Jitter, MaxCheckJitter)
	}
	v.positive(p+".rise", h.Rise)
	v.positive(p+".fall", h.Fall)
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// nextPrime returns the smallest prime ≥ n.
func nextPrime(n int) int {
	for !isPrime(n) {
		n++
	}
	return n
}

// caFile checks that path holds at least one PEM certificate.
func (v *validator) caFile(path, file string) {
	data := v.pemFile(path, "ca", file)
	if data == nil {
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(data) {
		v.errorf(path, "ca: %s holds no PEM certificate", file)
	}
}

// pemFile reads a certificate, key or CA file with ReadPEMFile and returns
// its contents, or reports why it cannot and returns nil.
func (v *validator) pemFile(path, key, file string) []byte {
	if len(file) > maxPath {
		v.errorf(path, "%s: the path is %d bytes; the limit is %d (PATH_MAX)", key, len(file), maxPath)
		return nil
	}
	data, err := ReadPEMFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.errorf(path, "%s: file %s does not exist", key, file)
	case err != nil:
		v.errorf(path, "%s: %v", key, err)
	case data == nil:
		return []byte{} // empty, not unreadable: the parse reports it
	}
	return data
}
