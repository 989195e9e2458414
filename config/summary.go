package config

import "fmt"

// Summary counts what a configuration defines, for `spooky validate` and logs.
type Summary struct {
	Services, L4, L7 int
	Backends         int // l4 backends over all services
	Pools, Upstreams int
}

// Summarize counts c's services, backends, pools and upstreams.
func (c *Config) Summarize() Summary {
	var s Summary
	s.Services = len(c.Services)
	for _, svc := range c.Services {
		switch svc.Mode {
		case ModeL4:
			s.L4++
		case ModeL7:
			s.L7++
		}
		s.Backends += len(svc.Backends)
	}
	s.Pools = len(c.Pools)
	for _, p := range c.Pools {
		s.Upstreams += len(p.Upstreams)
	}
	return s
}

// String reads like "3 services (2 l4, 1 l7), 5 backends, 2 pools (4 upstreams)".
func (s Summary) String() string {
	return fmt.Sprintf("%s (%d l4, %d l7), %s, %s (%s)",
		plural(s.Services, "service"), s.L4, s.L7, plural(s.Backends, "backend"),
		plural(s.Pools, "pool"), plural(s.Upstreams, "upstream"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
