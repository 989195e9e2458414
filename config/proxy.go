package config

// DefaultProxyMaxSessions bounds the userspace proxy's session table when
// the file does not: each session holds an upstream socket (a file
// descriptor, a local port and about 4 KiB of kernel and spooky memory,
// docs/benchmarks.md), so 65536 sessions cost some 250 MiB at most.
const DefaultProxyMaxSessions = 65536

// MaxProxyMaxSessions is the largest max_sessions accepted: each session
// holds a file descriptor, and a process gets at most 1<<20 by default
// (fs.nr_open).
const MaxProxyMaxSessions = 1 << 20

// ProxyConfig configures the userspace proxy that serves l4 services with
// forwarding: proxy.
type ProxyConfig struct {
	// MaxSessions bounds the sessions (client address and backend, each
	// with its own upstream socket) open at once over all proxy services.
	// A datagram that needs a new session when the table is full is
	// dropped and counted. Each session's socket also takes a local port,
	// so net.ipv4.ip_local_port_range (28232 ports by default) bounds
	// the sessions per source address of the host as well. If zero, 65536.
	MaxSessions int `yaml:"max_sessions"`
}

func (c *Config) setProxyDefaults(d defaulter) {
	def(d, "proxy.max_sessions", &c.Proxy.MaxSessions, DefaultProxyMaxSessions)
}

func (v *validator) proxy(c ProxyConfig) {
	if c.MaxSessions <= 0 || c.MaxSessions > MaxProxyMaxSessions {
		v.errorf("proxy.max_sessions", "max_sessions: %d is out of range 1..%d", c.MaxSessions, MaxProxyMaxSessions)
	}
}
