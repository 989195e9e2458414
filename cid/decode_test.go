package cid

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestDecodeRecoversTheAppendixBServerIDs(t *testing.T) {
	var cfgs []Config
	for _, v := range appendixB {
		cfg := v.config(t)
		// Plaintext and encrypted vectors share codepoints 0 and 1; one
		// decoder per vector keeps one config per codepoint.
		d := mustDecoder(t, cfg)
		t.Run(v.name, func(t *testing.T) {
			got, err := d.ServerID(nil, mustHex(t, v.cid))
			if err != nil {
				t.Fatalf("ServerID: %v", err)
			}
			if want := mustHex(t, v.sid); !bytes.Equal(got, want) {
				t.Errorf("ServerID = %x, want %x", got, want)
			}
		})
		if v.key != "" {
			cfgs = append(cfgs, cfg)
		}
	}
	t.Run("one decoder holds all encrypted configs at once", func(t *testing.T) {
		d := mustDecoder(t, cfgs...)
		for _, v := range appendixB[2:] {
			got, err := d.ServerID(nil, mustHex(t, v.cid))
			if err != nil || !bytes.Equal(got, mustHex(t, v.sid)) {
				t.Errorf("ServerID(%s) = %x, %v; want %s", v.cid, got, err, v.sid)
			}
		}
	})
}

func TestDecodeRejectsUnroutableCIDs(t *testing.T) {
	d := mustDecoder(t,
		Config{ID: 0, ServerIDLen: 3, NonceLen: 4},
		Config{ID: 2, ServerIDLen: 2, NonceLen: 5, Key: mustHex(t, appendixBKey)},
	)
	tests := []struct {
		name string
		cid  string
		want error
	}{
		{"an empty CID is too short", "", ErrShortCID},
		{"a CID one octet short of its config is too short", "07c4605e4504cc", ErrShortCID},
		{"an encrypted CID one octet short is too short", "47000000000000", ErrShortCID},
		{"codepoint 0b111 is always unroutable", "e7c4605e4504cc4f", ErrReservedCodepoint},
		{"codepoint 0b111 with length bits 0 is unroutable", "e0", ErrReservedCodepoint},
		{"a codepoint without a config is unknown", "27c4605e4504cc4f", ErrUnknownConfig},
		{"codepoint 6 without a config is unknown", "c7c4605e4504cc4f", ErrUnknownConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.ServerID(nil, mustHex(t, tt.cid))
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrNotRoutable) {
				t.Errorf("ServerID(%s) = %x, %v; want %v wrapping ErrNotRoutable", tt.cid, got, err, tt.want)
			}
		})
	}
}

func TestDecodeIgnoresOctetsAfterTheConfigLength(t *testing.T) {
	// Servers may append octets of their own (draft-21 §5.4).
	d := mustDecoder(t, Config{ID: 0, ServerIDLen: 3, NonceLen: 4, Key: mustHex(t, appendixBKey)})
	got, err := d.ServerID(nil, mustHex(t, "0720b1d07b359d3cffffffff"))
	if err != nil || !bytes.Equal(got, mustHex(t, "ed793a")) {
		t.Errorf("ServerID = %x, %v; want ed793a", got, err)
	}
}

func TestDecodeWritesOverDst(t *testing.T) {
	d := mustDecoder(t, Config{ID: 0, ServerIDLen: 3, NonceLen: 4})
	buf := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	got, err := d.ServerID(buf, mustHex(t, "07c4605e4504cc4f"))
	if err != nil || !bytes.Equal(got, mustHex(t, "c4605e")) {
		t.Fatalf("ServerID = %x, %v; want c4605e", got, err)
	}
	if &got[0] != &buf[0] {
		t.Error("ServerID did not reuse dst")
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	for _, v := range appendixB {
		t.Run(v.name, func(t *testing.T) {
			d := mustDecoder(t, v.config(t))
			cid := mustHex(t, v.cid)
			var buf [MaxCIDLen]byte
			allocs := testing.AllocsPerRun(100, func() {
				if _, err := d.ServerID(buf[:0], cid); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("ServerID allocated %.1f times per call, want 0", allocs)
			}
		})
	}
	t.Run("unroutable CIDs do not allocate either", func(t *testing.T) {
		d := mustDecoder(t)
		cid := mustHex(t, "e7c4605e4504cc4f")
		allocs := testing.AllocsPerRun(100, func() { _, _ = d.ServerID(nil, cid) })
		if allocs != 0 {
			t.Errorf("ServerID allocated %.1f times per call, want 0", allocs)
		}
	})
}

func TestNewDecoderRejectsBadConfigs(t *testing.T) {
	tests := []struct {
		name    string
		cfgs    []Config
		wantErr string
	}{
		{"two configs at one codepoint are rejected", []Config{{ID: 3, ServerIDLen: 1, NonceLen: 4}, {ID: 3, ServerIDLen: 2, NonceLen: 4}}, "config 1: invalid quic-lb config: config ID 3 given twice"},
		{"an invalid config is rejected with its index", []Config{{ID: 0, ServerIDLen: 1, NonceLen: 4}, {ID: 1, ServerIDLen: 1, NonceLen: 2}}, "config 1: invalid quic-lb config: nonce length 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewDecoder(tt.cfgs...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewDecoder = %v, want an ErrInvalidConfig containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDecoderConfigReportsEachCodepoint(t *testing.T) {
	key := mustHex(t, appendixBKey)
	d := mustDecoder(t, Config{ID: 0, ServerIDLen: 3, NonceLen: 4}, Config{ID: 5, ServerIDLen: 8, NonceLen: 8, Key: key})
	if cfg, ok := d.Config(0); !ok || cfg.Key != nil || cfg.ServerIDLen != 3 {
		t.Errorf("Config(0) = %+v, %v; want the plaintext config", cfg, ok)
	}
	cfg, ok := d.Config(5)
	if !ok || !bytes.Equal(cfg.Key, key) || cfg.NonceLen != 8 {
		t.Errorf("Config(5) = %+v, %v; want the encrypted config", cfg, ok)
	}
	cfg.Key[0] ^= 0xff // must not reach the decoder
	if again, _ := d.Config(5); !bytes.Equal(again.Key, key) {
		t.Error("changing the returned key changed the decoder's config")
	}
	for _, cp := range []uint8{1, 6, 7, 8, 255} {
		if _, ok := d.Config(cp); ok {
			t.Errorf("Config(%d) found a config, want none", cp)
		}
	}
}

// fit returns b cut or zero-padded to n octets.
func fit(b []byte, n int) []byte {
	out := make([]byte, n)
	copy(out, b)
	return out
}

// FuzzDecode decodes arbitrary connection IDs under arbitrary valid configs:
// ServerID must never panic, must fail only with ErrNotRoutable, and must
// return ServerIDLen octets when it succeeds; and whatever server ID and
// nonce an Encoder encodes, the Decoder must get the server ID back.
func FuzzDecode(f *testing.F) {
	for _, v := range appendixB {
		f.Add(mustHex(f, v.cid), v.configID, uint8(len(v.sid)/2), uint8(len(v.nonce)/2), mustHex(f, v.key), mustHex(f, v.sid), mustHex(f, v.nonce))
	}
	f.Add([]byte{0xe7, 1, 2, 3, 4, 5, 6, 7}, uint8(0), uint8(3), uint8(4), []byte(nil), []byte{1}, []byte{2})
	f.Add([]byte{}, uint8(6), uint8(15), uint8(4), mustHex(f, appendixBKey), []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, cid []byte, id, sidLen, nonceLen uint8, key, sid, nonce []byte) {
		cfg := Config{ID: id % (MaxConfigID + 1), ServerIDLen: 1 + int(sidLen)%15}
		cfg.NonceLen = MinNonceLen + int(nonceLen)%(maxPayload-cfg.ServerIDLen-MinNonceLen+1)
		if len(key) >= KeyLen {
			cfg.Key = key[:KeyLen]
		}
		d, err := NewDecoder(cfg)
		if err != nil {
			t.Fatalf("NewDecoder(%+v): %v", cfg, err)
		}

		got, err := d.ServerID(nil, cid)
		switch {
		case err != nil && !errors.Is(err, ErrNotRoutable):
			t.Fatalf("ServerID(%x) error %v does not wrap ErrNotRoutable", cid, err)
		case err == nil && (len(got) != cfg.ServerIDLen || len(cid) < cfg.Len() || cid[0]>>5 != cfg.ID):
			t.Fatalf("ServerID(%x) = %x under %+v: wrong length or should not route", cid, got, cfg)
		case err != nil && len(cid) >= cfg.Len() && cid[0]>>5 == cfg.ID:
			t.Fatalf("ServerID(%x) = %v, want a server ID: the CID fits config %+v", cid, err, cfg)
		}

		sid, nonce = fit(sid, cfg.ServerIDLen), fit(nonce, cfg.NonceLen)
		e, err := NewEncoder(cfg, sid)
		if err != nil {
			t.Fatalf("NewEncoder: %v", err)
		}
		c, err := e.Encode(nil, nonce)
		if err != nil {
			t.Fatalf("Encode: %v", err)
		}
		if got, err := d.ServerID(nil, c); err != nil || !bytes.Equal(got, sid) {
			t.Fatalf("ServerID(Encode(%x, %x)) = %x, %v under %+v", sid, nonce, got, err, cfg)
		}
	})
}

func BenchmarkDecoderServerID(b *testing.B) {
	key := mustHex(b, appendixBKey)
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"plaintext/sid3-nonce4", Config{ServerIDLen: 3, NonceLen: 4}},
		{"single-pass/sid8-nonce8", Config{ServerIDLen: 8, NonceLen: 8, Key: key}},
		{"four-pass/sid3-nonce4-odd", Config{ServerIDLen: 3, NonceLen: 4, Key: key}},
		{"four-pass/sid4-nonce8", Config{ServerIDLen: 4, NonceLen: 8, Key: key}},
		{"four-pass/sid10-nonce5-fourth-pass", Config{ServerIDLen: 10, NonceLen: 5, Key: key}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sid := seq(bc.cfg.ServerIDLen, 1)
			c, err := mustEncoder(b, bc.cfg, sid).Generate()
			if err != nil {
				b.Fatal(err)
			}
			d := mustDecoder(b, bc.cfg)
			var buf [MaxCIDLen]byte
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.ServerID(buf[:0], c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
