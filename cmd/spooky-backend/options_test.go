package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestParseArgs(t *testing.T) {
	base := []string{"--listen", "198.18.0.11:443", "--name", "backend1", "--server-id", "0a0b"}
	t.Run("a minimal command line gives a plaintext config with the server ID's length", func(t *testing.T) {
		o, err := parseArgs(base, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if o.listen.String() != "198.18.0.11:443" || o.name != "backend1" || !bytes.Equal(o.serverID, []byte{0x0a, 0x0b}) {
			t.Errorf("got listen=%s name=%s server id=%x", o.listen, o.name, o.serverID)
		}
		if o.cid.ServerIDLen != 2 || o.cid.NonceLen != 8 || o.cid.Key != nil || o.cid.ID != 0 {
			t.Errorf("cid config %+v, want server ID length 2, nonce 8, no key, ID 0", o.cid)
		}
		if o.proto != protoH3 {
			t.Errorf("protocol %q, want h3 by default", o.proto)
		}
	})
	t.Run("a TCP protocol needs no server ID and takes a certificate", func(t *testing.T) {
		for _, p := range []string{"h1", "h2"} {
			o, err := parseArgs([]string{"--protocol", p, "--listen", "198.18.2.1:8443", "--name", "api-1",
				"--cert", "c.pem", "--key-file", "k.pem"}, io.Discard)
			if err != nil {
				t.Fatalf("--protocol %s: %v", p, err)
			}
			if string(o.proto) != p || o.certFile != "c.pem" || o.keyFile != "k.pem" || o.serverID != nil {
				t.Errorf("--protocol %s: got %+v", p, o)
			}
		}
	})
	t.Run("cleartext h2c needs neither a server ID nor a certificate", func(t *testing.T) {
		o, err := parseArgs([]string{"--protocol", "h2c", "--listen", "198.18.3.1:8080", "--name", "static-1"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if o.proto != protoH2C || o.proto.tls() {
			t.Errorf("got protocol %q (tls %v), want cleartext h2c", o.proto, o.proto.tls())
		}
	})
	t.Run("an IPv6 VIP, a key and a config ID are taken", func(t *testing.T) {
		o, err := parseArgs([]string{"--listen", "[2001:db8::a]:4433", "--name", "b", "--server-id", "01",
			"--config-id", "5", "--nonce-len", "6", "--key", strings.Repeat("ab", 16)}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if o.listen.Addr().String() != "2001:db8::a" || o.cid.ID != 5 || o.cid.NonceLen != 6 || len(o.cid.Key) != 16 {
			t.Errorf("got %+v", o)
		}
	})

	bad := []struct {
		name string
		args []string
		want string
	}{
		{"a missing --listen is refused", []string{"--name", "b", "--server-id", "01"}, "--listen"},
		{"a listen address without a port is refused", []string{"--listen", "198.18.0.11", "--name", "b", "--server-id", "01"}, "--listen"},
		{"port 0 is refused", []string{"--listen", "198.18.0.11:0", "--name", "b", "--server-id", "01"}, "port 0"},
		{"a missing name is refused", []string{"--listen", "198.18.0.11:443", "--server-id", "01"}, "--name"},
		{"a server ID that is not hex is refused", append(base[:4:4], "--server-id", "zz"), "--server-id"},
		{"a config ID of 7 is refused", append(base, "--config-id", "7"), "--config-id"},
		{"a nonce shorter than 4 octets is refused", append(base, "--nonce-len", "3"), "nonce length"},
		{"a key of the wrong length is refused", append(base, "--key", "abcd"), "key length"},
		{"a certificate without its key is refused", append(base, "--cert", "c.pem"), "--key-file"},
		{"a short reset key is refused", append(base, "--reset-key", "ab"), "--reset-key"},
		{"stray arguments are refused", append(base, "extra"), "unexpected"},
		{"an unknown protocol is refused", append(base, "--protocol", "h4"), "--protocol"},
		{"a server ID with a TCP protocol is refused", append(base, "--protocol", "h2"), "only for --protocol h3"},
		{"a CID key with a TCP protocol is refused",
			[]string{"--protocol", "h1", "--listen", "198.18.0.11:443", "--name", "b", "--key", strings.Repeat("ab", 16)}, "--key"},
		{"a certificate for cleartext h2c is refused",
			[]string{"--protocol", "h2c", "--listen", "198.18.0.11:80", "--name", "b", "--cert", "c", "--key-file", "k"}, "cleartext"},
		{"a TCP certificate without its key is refused",
			[]string{"--protocol", "h2", "--listen", "198.18.0.11:443", "--name", "b", "--cert", "c"}, "--key-file"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseArgs(tt.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseArgs(%q) = %v, want an error mentioning %q", tt.args, err, tt.want)
			}
		})
	}
}
