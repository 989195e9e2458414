package health

import (
	"testing"
	"time"

	"github.com/spooky-lb/spooky/config"
)

func TestTCPProbe(t *testing.T) {
	mustNotLeak(t)
	srv := mustTCPServer(t)
	for _, tc := range []struct {
		name string
		addr string
		ok   bool
		want string
	}{
		{"a listening port passes", srv.addr, true, "connected"},
		{"a closed port fails as refused", deadAddr(t, "tcp"), false, "connect: connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := probeOnce(t, Probe{Type: config.CheckTCP, Addr: tc.addr, Timeout: time.Second})
			if o.ok != tc.ok || o.detail != tc.want || o.local {
				t.Fatalf("probe = %+v, want ok %v, %q", o, tc.ok, tc.want)
			}
		})
	}
	t.Run("the server saw the connection", func(t *testing.T) {
		waitFor(t, "the server accepted one connection", func() bool { return srv.accepts.Load() == 1 })
	})
}
