package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/admin/admintest"
)

func TestStatusPrintsBGPPeersAndRoutes(t *testing.T) {
	d := admintest.New()
	med := uint32(10)
	d.St.BGP = &admin.BGPStatus{
		ASN: 65001, RouterID: netip.MustParseAddr("198.18.0.2"),
		Peers: []admin.BGPPeer{
			{Address: netip.MustParseAddr("198.18.0.254"), ASN: 65000, State: "established", Since: admintest.Loaded, HoldTimeSeconds: 3, Advertised: 1},
			{Address: netip.MustParseAddr("2001:db8::fe"), ASN: 65000, State: "active", LastError: "hold timer expired"},
		},
		Routes: []admin.BGPRoute{{Prefix: netip.MustParsePrefix("198.18.0.10/32"), Communities: []string{"65001:100"}, MED: &med}},
	}
	sock := mustServeAdmin(t, d)
	out, errOut, code := runCLI(t, "status", "--admin", sock)
	want := `
BGP PEER      ASN    STATE                        SINCE                 HOLD  ROUTES SENT
198.18.0.254  65000  established                  ` + admintest.Loaded.Format(time.RFC3339) + `  3s    1
2001:db8::fe  65000  active (hold timer expired)  -                     -     0

BGP ROUTE       NEXT HOP  COMMUNITIES  MED
198.18.0.10/32  self      65001:100    10
`
	if code != 0 || !strings.Contains(out, want) || errOut != "" {
		t.Errorf("exit %d, stderr %q, stdout:\n%s\nwant it to hold:\n%s", code, errOut, out, want)
	}
}

func TestDrainAllDrainsEveryTargetAndSaysWhatBGPAnnounces(t *testing.T) {
	d := admintest.New()
	d.St.BGP = &admin.BGPStatus{Peers: []admin.BGPPeer{}, Routes: []admin.BGPRoute{{Prefix: netip.MustParsePrefix("198.18.0.10/32")}}}
	sock := mustServeAdmin(t, d)

	out, errOut, code := runCLI(t, "drain", "--all", "--admin", sock)
	if want := "drain: 4 backends and upstreams drained; BGP routes withdrawn (if the bgp section is set)\n"; code != 0 || out != want {
		t.Errorf("drain --all: exit %d, stderr %q, stdout %q, want %q", code, errOut, out, want)
	}
	st := d.St
	for _, s := range st.Services {
		for _, b := range s.Backends {
			if b.State != "draining" {
				t.Errorf("after drain --all, %s/%s is %s", s.Name, b.Name, b.State)
			}
		}
	}
	if !st.BGP.Withdrawn {
		t.Error("after drain --all the BGP status is not withdrawn")
	}

	out, errOut, code = runCLI(t, "undrain", "--all", "--admin", sock)
	if want := "undrain: 4 backends and upstreams undrained; BGP announces 198.18.0.10/32\n"; code != 0 || out != want {
		t.Errorf("undrain --all: exit %d, stderr %q, stdout %q, want %q", code, errOut, out, want)
	}

	for _, args := range [][]string{{"drain", "--all", "web/b1"}, {"undrain", "--all", "web/b1"}, {"drain", "--all", "--wait"}} {
		_, errOut, code := runCLI(t, append(args, "--admin", sock)...)
		if code == 0 || !strings.Contains(errOut, "--all") {
			t.Errorf("%v: exit %d, stderr %q; want a refusal naming --all", args, code, errOut)
		}
	}
}
