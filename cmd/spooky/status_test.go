package main

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/admin/admintest"
)

func TestStatusPrintsConfigServicesAndPools(t *testing.T) {
	sock := mustServeAdmin(t, admintest.New())
	out, errOut, code := runCLI(t, "status", "--admin", sock)
	want := `config       /etc/spooky/spooky.yaml
sha256       9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
loaded       2025-03-01T12:00:00Z
last reload  2025-03-01T12:10:00Z rejected: /etc/spooky/spooky.yaml:4:11: port: 70000 is out of range 1..65535

SERVICE  ADDRESS             MODE  FORWARDING  BACKENDS
web      198.18.0.10:443     l4    l2dsr       1/2 healthy, 1 unhealthy
edge     [2001:db8::20]:443  l7    -           pools api

POOL    POLICY       UPSTREAMS
api     round_robin  1/2 healthy, 1 unhealthy
static  p2c          0/0 healthy
`
	if code != 0 || out != want || errOut != "" {
		t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, want)
	}
}

func TestStatusJSONParsesBackToTheDaemonsStatus(t *testing.T) {
	d := admintest.New()
	sock := mustServeAdmin(t, d)
	out, errOut, code := runCLI(t, "status", "--json", "--admin", sock)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got admin.Status
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	want, _ := d.Status(context.Background())
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("got %+v\nwant %+v", got, *want)
	}
}
