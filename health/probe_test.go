package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/config"
)

func TestFailure(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		err   error
		want  string
		local bool
	}{
		{"a refused connection is named by its system call", context.Background(), refused, "connect: connection refused", false},
		{"the URL and dial wrappers of net/http are dropped", context.Background(),
			&url.Error{Op: "Get", URL: "http://198.18.1.1/", Err: refused}, "connect: connection refused", false},
		{"an error with no system call is named by the stage", context.Background(), errors.New("no recent network activity"),
			"handshake: no recent network activity", false},
		{"a passed deadline is a timeout whatever the error says", expired, errors.New("EOF"), "timeout after 1s", false},
		{"a mark that cannot be set is local however deeply wrapped", context.Background(),
			&url.Error{Op: "Get", URL: "http://198.18.1.1/", Err: &net.OpError{Op: "dial", Err: &localError{errors.New("set socket mark 0x7: operation not permitted")}}},
			"set socket mark 0x7: operation not permitted", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := failure(tc.ctx, time.Second, "handshake", tc.err)
			if o.ok || o.detail != tc.want || o.local != tc.local {
				t.Fatalf("failure = %+v, want %q, local %v", o, tc.want, tc.local)
			}
		})
	}
}

func TestProbeDefaultsAndEquality(t *testing.T) {
	t.Run("zero fields take the configuration's defaults", func(t *testing.T) {
		p := Probe{Type: config.CheckHTTP3, Addr: "198.18.1.1:443"}.withDefaults()
		if p.Interval != config.DefaultCheckInterval || p.Timeout != config.DefaultCheckTimeout || p.Rise != config.DefaultCheckRise ||
			p.Fall != config.DefaultCheckFall || p.Path != "/" || fmt.Sprint(p.ExpectStatus) != "[200-399]" || p.ALPN != "" {
			t.Fatalf("withDefaults = %+v", p)
		}
		if q := (Probe{Type: config.CheckQUIC, Interval: 100 * time.Millisecond}).withDefaults(); q.ALPN != "h3" || q.Timeout != 100*time.Millisecond {
			t.Fatalf("quic withDefaults = %+v, want ALPN h3 and the timeout cut to the interval", q)
		}
	})
	t.Run("probes differing only in nil and empty statuses are equal", func(t *testing.T) {
		a := Probe{Type: config.CheckTCP, Addr: "198.18.1.1:443"}
		b := a
		b.ExpectStatus = []config.StatusRange{}
		if !a.equal(b) {
			t.Fatal("nil and empty ExpectStatus differ")
		}
		b.ExpectStatus = []config.StatusRange{{Lo: 200, Hi: 200}}
		c := a
		c.Mark = 1
		if a.equal(b) || a.equal(c) {
			t.Fatal("probes with different statuses or marks are equal")
		}
	})
}
