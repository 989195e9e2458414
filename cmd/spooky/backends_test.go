package main

import (
	"encoding/json"
	"testing"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/admin/admintest"
)

func TestBackendsPrintsEveryTargetOrOneServices(t *testing.T) {
	sock := mustServeAdmin(t, admintest.New())
	l4 := `SERVICE  BACKEND  ADDRESS         WEIGHT  STATE      SOURCE  SINCE                 PACKETS  BYTES    REASON
web      b1       198.18.1.1:443  100     healthy    -       2025-03-01T12:01:00Z  12345    9876543  handshake in 3ms
web      b2       198.18.1.2:443  50      unhealthy  active  2025-03-01T12:05:00Z  7        8400     no handshake in 1s
`
	l7 := `POOL  UPSTREAM                 WEIGHT  STATE      SOURCE   SINCE                 BREAKER  IN FLIGHT  REQUESTS  REASON
api   https://198.18.2.1:8443  1       healthy    -        -                     closed   3          1000      -
api   h3://198.18.2.2:8443     1       unhealthy  passive  2025-03-01T12:20:00Z  open     0          17        breaker open: 5 consecutive failures
`
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"every service", nil, l4 + "\n" + l7},
		{"an l4 service", []string{"web"}, l4},
		{"an l7 service shows the pools its routes use", []string{"edge"}, l7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, append([]string{"backends", "--admin", sock}, tt.args...)...)
			if code != 0 || out != tt.want || errOut != "" {
				t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, tt.want)
			}
		})
	}
}

func TestBackendsJSONHoldsOnlyTheService(t *testing.T) {
	sock := mustServeAdmin(t, admintest.New())
	out, errOut, code := runCLI(t, "backends", "edge", "--json", "--admin", sock)
	var st admin.Status
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil {
		t.Fatalf("exit %d, %v, stderr %q", code, err, errOut)
	}
	if len(st.Services) != 1 || st.Services[0].Name != "edge" || len(st.Pools) != 1 || len(st.Pools[0].Upstreams) != 2 {
		t.Errorf("got %+v", st)
	}
}

func TestBackendsOfAnUnknownServiceFails(t *testing.T) {
	sock := mustServeAdmin(t, admintest.New())
	out, errOut, code := runCLI(t, "backends", "nope", "--admin", sock)
	if want := "spooky: backends: unknown service \"nope\"\n"; code != 1 || out != "" || errOut != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, out, errOut, want)
	}
}
