package health

import (
	"cmp"
	"net"
	"net/netip"
	"strconv"

	"github.com/spooky-lb/spooky/config"
)

// Steer returns the socket mark that steers a probe of service's VIP to
// backend, and whether there is one.
type Steer func(service, backend string) (mark uint32, ok bool)

// ProbesFromConfig returns the probes cfg asks for: one per backend of an
// l4 service with a health_check and one per upstream of a pool with a
// health_check.
//
// A backend checked with address: vip is probed at the VIP (and the check's
// port, else the service's) with the mark steer gives, so the probe takes
// the clients' path to a server bound to the VIP. If steer is nil or has no
// mark for the backend, the probe falls back to the backend's own address,
// as address: backend does; the probe's Addr and zero Mark show it.
//
// An upstream is one target however many pools list it (Upstream), so it
// is probed once: the check of the first pool in the file that lists it
// wins. Its URL's scheme picks the transport and its tls settings apply
// unless the check sets its own (see config.HealthCheckConfig).
func ProbesFromConfig(cfg *config.Config, steer Steer) []Probe {
	var out []Probe
	for i := range cfg.Services {
		s := &cfg.Services[i]
		if s.Mode != config.ModeL4 || s.HealthCheck == nil {
			continue
		}
		for _, b := range s.Backends {
			out = append(out, backendProbe(s, b, steer))
		}
	}
	seen := map[string]bool{}
	for _, pl := range cfg.Pools {
		if pl.HealthCheck == nil {
			continue
		}
		for _, u := range pl.Upstreams {
			if seen[u.Address] {
				continue // probed by the first pool that lists it
			}
			if p, ok := upstreamProbe(pl.HealthCheck, u); ok {
				seen[u.Address] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// baseProbe copies what every probe of h shares.
func baseProbe(t Target, h *config.HealthCheckConfig) Probe {
	return Probe{
		Target: t, Type: h.Type, Path: h.Path, Host: h.Host, ExpectStatus: h.StatusRanges(), Body: h.Body,
		ALPN: h.ALPN, Interval: h.Interval, Jitter: h.Jitter, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall,
	}
}

func backendProbe(s *config.ServiceConfig, b config.BackendConfig, steer Steer) Probe {
	h := s.HealthCheck
	p := baseProbe(Backend(s.Name, b.Name), h)
	port := cmp.Or(h.Port, b.Port, s.Port)
	p.Addr = netip.AddrPortFrom(b.Address, uint16(port)).String()
	if h.Address != config.CheckAddressBackend && steer != nil {
		if mark, ok := steer(s.Name, b.Name); ok {
			p.Addr = netip.AddrPortFrom(s.Address, uint16(cmp.Or(h.Port, s.Port))).String()
			p.Mark = mark
		}
	}
	// spooky does not speak TLS to a backend (clients do), so nothing says
	// whom to expect unless the check does.
	p.TLS = ProbeTLS{ServerName: h.ServerName, CAFile: h.TLS.CA,
		Verify: !h.TLS.InsecureSkipVerify && (h.TLS.CA != "" || h.ServerName != "")}
	return p
}

func upstreamProbe(h *config.HealthCheckConfig, u config.UpstreamConfig) (Probe, bool) {
	url := u.URL()
	if url == nil {
		return Probe{}, false // validation rejects it
	}
	p := baseProbe(Upstream(u.Address), h)
	tcpPort, tlsPort := 80, 443
	switch url.Scheme {
	case "http", "h2c":
		p.Type = pick(h.Type.IsHTTP(), config.CheckHTTP, config.CheckTCP)
		p.H2C = url.Scheme == "h2c" && h.Type.IsHTTP()
	case "https":
		tcpPort = tlsPort
		p.Type = pick(h.Type.IsHTTP(), config.CheckHTTPS, config.CheckTCP)
	case "h3":
		tcpPort = tlsPort
		p.Type = pick(h.Type.IsHTTP(), config.CheckHTTP3, config.CheckQUIC)
	default:
		return Probe{}, false
	}
	if p.Type != config.CheckQUIC {
		p.ALPN = ""
	}
	if p.Type == config.CheckQUIC && p.ALPN == "" {
		p.ALPN = config.DefaultCheckALPN // an h3:// upstream speaks h3
	}
	if !p.Type.IsHTTP() {
		p.Path, p.Host, p.ExpectStatus, p.Body = "", "", nil, ""
	}
	urlPort, _ := strconv.Atoi(url.Port())
	p.Addr = net.JoinHostPort(url.Hostname(), strconv.Itoa(cmp.Or(h.Port, urlPort, tcpPort)))

	// The check's own settings win, then the upstream's.
	name := cmp.Or(h.ServerName, u.TLS.ServerName)
	ca := cmp.Or(h.TLS.CA, u.TLS.CA)
	p.TLS = ProbeTLS{
		ServerName: cmp.Or(name, url.Hostname()),
		CAFile:     ca,
		Verify:     !h.TLS.InsecureSkipVerify && !u.TLS.InsecureSkipVerify && (ca != "" || name != ""),
	}
	if p.Type == config.CheckTCP || p.Type == config.CheckHTTP {
		p.TLS = ProbeTLS{}
	}
	return p, true
}

func pick[T any](cond bool, a, b T) T {
	if cond {
		return a
	}
	return b
}
