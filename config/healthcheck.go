package config

import (
	"fmt"
	"strconv"
	"strings"
)

// StatusRange is an inclusive range of HTTP status codes that a health
// check accepts.
type StatusRange struct{ Lo, Hi int }

// Contains reports whether code is in r.
func (r StatusRange) Contains(code int) bool { return code >= r.Lo && code <= r.Hi }

// String returns r as written in expect_status: "200" or "200-399".
func (r StatusRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// ParseStatusRange reads one expect_status entry: a code ("204"), a range
// ("200-299") or a class ("2xx"), within 100..599 (RFC 9110 §15).
func ParseStatusRange(s string) (StatusRange, error) {
	code := func(t string) (int, bool) {
		n, err := strconv.Atoi(t)
		return n, err == nil && isDigits(t) && n >= 100 && n <= 599
	}
	if len(s) == 3 && strings.EqualFold(s[1:], "xx") && s[0] >= '1' && s[0] <= '5' {
		lo := int(s[0]-'0') * 100
		return StatusRange{lo, lo + 99}, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, okA := code(strings.TrimSpace(lo))
	b, okB := a, okA
	if isRange {
		b, okB = code(strings.TrimSpace(hi))
	}
	switch {
	case !okA || !okB:
		return StatusRange{}, fmt.Errorf("%q is not a status code (100..599), a range such as 200-299 or a class such as 2xx", s)
	case a > b:
		return StatusRange{}, fmt.Errorf("%q is an empty range", s)
	}
	return StatusRange{a, b}, nil
}

// StatusRanges returns ExpectStatus parsed. Entries that do not parse,
// which validation rejects, are left out.
func (h *HealthCheckConfig) StatusRanges() []StatusRange {
	var out []StatusRange
	for _, s := range h.ExpectStatus {
		if r, err := ParseStatusRange(s); err == nil {
			out = append(out, r)
		}
	}
	return out
}

// healthChecks returns every health check in c, services' first.
func (c *Config) healthChecks() []*HealthCheckConfig {
	var out []*HealthCheckConfig
	for i := range c.Services {
		if h := c.Services[i].HealthCheck; h != nil {
			out = append(out, h)
		}
	}
	for i := range c.Pools {
		if h := c.Pools[i].HealthCheck; h != nil {
			out = append(out, h)
		}
	}
	return out
}
