package admin_test

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spooky-lb/spooky/admin"
	"github.com/spooky-lb/spooky/admin/admintest"
	"github.com/spooky-lb/spooky/config"
)

// mustLoadExample loads examples/spooky.yaml, which sets nearly every field.
func mustLoadExample(tb testing.TB) *config.Config {
	tb.Helper()
	// An absolute path, so the certificate paths are too, and parse the
	// same from wherever the encoded file is said to be.
	path, err := filepath.Abs("../examples/spooky.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

func TestEncodedConfigParsesBackToTheSameConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*config.Config)
	}{
		{"the example without its keys", func(*config.Config) {}},
		{"a retry count of zero, which differs from leaving it out", func(c *config.Config) { c.Pools[0].Retries.Count = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustLoadExample(t)
			for i := range cfg.Services {
				for j := range cfg.Services[i].CID {
					cfg.Services[i].CID[j].Key = nil
				}
			}
			tt.edit(cfg)
			b, err := admin.EncodeConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}
			back, err := config.Parse(b, "/etc/spooky/effective.yaml")
			if err != nil {
				t.Fatalf("the encoded config does not parse: %v\n%s", err, b)
			}
			// The hash is of the bytes parsed, which differ by design.
			back.SHA256 = cfg.SHA256
			if !reflect.DeepEqual(back, cfg) {
				t.Errorf("parsed back, the config differs: %+v\n%s", config.Diff(cfg, back), b)
			}
		})
	}
}

func TestEncodedConfigRedactsKeysAndReadsLikeTheFile(t *testing.T) {
	b, err := admin.EncodeConfig(mustLoadExample(t))
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	if strings.Contains(out, "000102030405060708090a0b0c0d0e0f") || !strings.Contains(out, "key: redacted") {
		t.Errorf("the QUIC-LB key is not redacted:\n%s", out)
	}
	for _, want := range []string{"flow_timeout: 1m0s\n", "address: 198.18.0.10\n", `server_id: "0001"`, "socket: /run/spooky/admin.sock\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, unwanted := range []string{"null", `: ""`, ": []", ": {}", ": false", "maglev_size: 0"} {
		if strings.Contains(out, unwanted) {
			t.Errorf("output holds empty field %q:\n%s", unwanted, out)
		}
	}
}

func TestConfigInfoHashesTheBytesLoaded(t *testing.T) {
	// sha256("test"), as sha256sum prints it.
	ci := admin.NewConfigInfo("/etc/spooky/spooky.yaml", []byte("test"), admintest.Loaded)
	want := admin.ConfigInfo{Path: "/etc/spooky/spooky.yaml", SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", LoadedAt: admintest.Loaded}
	if ci != want {
		t.Errorf("got %+v, want %+v", ci, want)
	}
}

func TestEncodedBGPSectionParsesBackWithThePasswordRedacted(t *testing.T) {
	path, err := filepath.Abs("../examples/bgp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := admin.EncodeConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), cfg.BGP.Peers[0].Password) {
		t.Fatalf("the encoded config shows the BGP password:\n%s", b)
	}
	back, err := config.Parse(b, path)
	if err != nil {
		t.Fatalf("encoded config does not parse: %v\n%s", err, b)
	}
	if got := back.BGP.Peers[0].Password; got != admin.Redacted {
		t.Errorf("password read back as %q, want %q", got, admin.Redacted)
	}
	back.BGP.Peers[0].Password = cfg.BGP.Peers[0].Password
	back.SHA256 = cfg.SHA256
	if !reflect.DeepEqual(back.BGP, cfg.BGP) {
		t.Errorf("bgp read back as %+v, want %+v", back.BGP, cfg.BGP)
	}
}
