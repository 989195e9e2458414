package cid

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestEncodeProducesTheAppendixBVectors(t *testing.T) {
	for _, v := range appendixB {
		t.Run(v.name, func(t *testing.T) {
			e := mustEncoder(t, v.config(t), mustHex(t, v.sid))
			got, err := e.Encode(nil, mustHex(t, v.nonce))
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if hex.EncodeToString(got) != v.cid {
				t.Errorf("Encode = %x, want %s", got, v.cid)
			}
		})
	}
}

func TestEncodeWritesOverDst(t *testing.T) {
	cfg := Config{ID: 1, ServerIDLen: 2, NonceLen: 4}
	e := mustEncoder(t, cfg, []byte{0xaa, 0xbb})
	buf := bytes.Repeat([]byte{0xff}, MaxCIDLen)
	got, err := e.Encode(buf, []byte{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if want := mustHex(t, "26aabb01020304"); !bytes.Equal(got, want) {
		t.Errorf("Encode = %x, want %x", got, want)
	}
	if &got[0] != &buf[0] {
		t.Error("Encode allocated although dst had room")
	}
}

func TestEncodeRejectsBadInput(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		serverID []byte
		nonce    []byte
		wantErr  string
	}{
		{"a config that does not validate is rejected", Config{ID: 7, ServerIDLen: 1, NonceLen: 4}, []byte{1}, nil, "config ID 7"},
		{"a server ID of the wrong length is rejected", Config{ServerIDLen: 2, NonceLen: 4}, []byte{1}, nil, "server ID is 1 octets, config 0 needs 2"},
		{"a nonce of the wrong length is rejected", Config{ServerIDLen: 1, NonceLen: 4}, []byte{1}, []byte{1, 2, 3}, "nonce is 3 octets, config 0 needs 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := NewEncoder(tt.cfg, tt.serverID)
			if err == nil {
				_, err = e.Encode(nil, tt.nonce)
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestEncoderKeepsItsOwnCopyOfServerIDAndKey(t *testing.T) {
	sid := []byte{1, 2, 3}
	key := mustHex(t, appendixBKey)
	cfg := Config{ServerIDLen: 3, NonceLen: 4, Key: key}
	e := mustEncoder(t, cfg, sid)
	nonce := []byte{9, 9, 9, 9}
	before, _ := e.Encode(nil, nonce)
	sid[0], key[0] = 0xff, 0xff
	after, _ := e.Encode(nil, nonce)
	if !bytes.Equal(before, after) {
		t.Errorf("CID changed from %x to %x after the caller changed its slices", before, after)
	}
}

func TestRandomLengthBitsKeepTheCodepoint(t *testing.T) {
	cfg := Config{ID: 5, ServerIDLen: 2, NonceLen: 4}
	e := mustEncoder(t, cfg, []byte{7, 8})
	e.SetSelfDescribedLength(false)
	d := mustDecoder(t, cfg)
	lows := map[byte]bool{}
	for range 200 {
		c, err := e.Encode(nil, []byte{1, 2, 3, 4})
		if err != nil {
			t.Fatal(err)
		}
		if c[0]>>5 != 5 {
			t.Fatalf("first octet %#x does not carry codepoint 5", c[0])
		}
		lows[c[0]&0x1f] = true
		if sid, err := d.ServerID(nil, c); err != nil || !bytes.Equal(sid, []byte{7, 8}) {
			t.Fatalf("ServerID(%x) = %x, %v; want 0708", c, sid, err)
		}
	}
	// 200 draws from 32 values all landing on a few is vanishingly unlikely.
	if len(lows) < 16 {
		t.Errorf("low five bits took only %d distinct values in 200 CIDs, want random", len(lows))
	}
}

// validLengths calls f for every (ServerIDLen, NonceLen) pair draft-21 §5.3
// allows.
func validLengths(f func(sidLen, nonceLen int)) {
	for sidLen := 1; sidLen+MinNonceLen <= maxPayload; sidLen++ {
		for nonceLen := MinNonceLen; sidLen+nonceLen <= maxPayload; nonceLen++ {
			f(sidLen, nonceLen)
		}
	}
}

// TestEveryValidConfigRoundTrips encodes random server IDs and nonces under
// every valid length pair, with and without a key, and decodes them back.
func TestEveryValidConfigRoundTrips(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, keyed := range []bool{false, true} {
		validLengths(func(sidLen, nonceLen int) {
			cfg := Config{ID: uint8(rng.IntN(7)), ServerIDLen: sidLen, NonceLen: nonceLen}
			if keyed {
				cfg.Key = randBytes(rng, KeyLen)
			}
			d := mustDecoder(t, cfg)
			for range 20 {
				sid := randBytes(rng, sidLen)
				nonce := randBytes(rng, nonceLen)
				e := mustEncoder(t, cfg, sid)
				c, err := e.Encode(nil, nonce)
				if err != nil {
					t.Fatalf("sid %d nonce %d key %v: Encode: %v", sidLen, nonceLen, keyed, err)
				}
				if len(c) != cfg.Len() || c[0] != cfg.ID<<5|byte(cfg.Len()-1) {
					t.Fatalf("sid %d nonce %d key %v: CID %x, want %d octets starting %#x", sidLen, nonceLen, keyed, c, cfg.Len(), cfg.ID<<5|byte(cfg.Len()-1))
				}
				if keyed && bytes.Equal(c[1:1+sidLen], sid) && sidLen > 2 {
					t.Errorf("sid %d nonce %d: encrypted CID %x shows server ID %x in the clear", sidLen, nonceLen, c, sid)
				}
				got, err := d.ServerID(nil, c)
				if err != nil || !bytes.Equal(got, sid) {
					t.Fatalf("sid %d nonce %d key %v: ServerID(%x) = %x, %v; want %x", sidLen, nonceLen, keyed, c, got, err, sid)
				}
			}
		})
	}
}

// TestDistinctNoncesGiveDistinctCIDs checks that, for one server, CIDs never
// collide when nonces differ: the encryption is a permutation, including the
// nibble handling of odd lengths.
func TestDistinctNoncesGiveDistinctCIDs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, keyed := range []bool{false, true} {
		validLengths(func(sidLen, nonceLen int) {
			cfg := Config{ServerIDLen: sidLen, NonceLen: nonceLen}
			if keyed {
				cfg.Key = randBytes(rng, KeyLen)
			}
			e := mustEncoder(t, cfg, randBytes(rng, sidLen))
			seen := map[string]string{}
			for i := range 256 {
				// Nonces that differ in one octet or nibble, the hardest case.
				nonce := make([]byte, nonceLen)
				nonce[rng.IntN(nonceLen)] = byte(i)
				c, err := e.Encode(nil, nonce)
				if err != nil {
					t.Fatal(err)
				}
				if prev, ok := seen[string(c)]; ok && prev != string(nonce) {
					t.Fatalf("sid %d nonce %d key %v: nonces %x and %x both give CID %x", sidLen, nonceLen, keyed, prev, nonce, c)
				}
				seen[string(c)] = string(nonce)
			}
		})
	}
}

func TestGenerateGivesFreshRoutableCIDs(t *testing.T) {
	for _, key := range [][]byte{nil, mustHex(t, appendixBKey)} {
		cfg := Config{ID: 4, ServerIDLen: 3, NonceLen: 6, Key: key}
		sid := []byte{0xde, 0xad, 0x01}
		e := mustEncoder(t, cfg, sid)
		d := mustDecoder(t, cfg)
		seen := map[string]bool{}
		for range 1000 {
			c, err := e.Generate()
			if err != nil {
				t.Fatal(err)
			}
			if seen[string(c)] {
				t.Fatalf("Generate repeated CID %x", c)
			}
			seen[string(c)] = true
			if got, err := d.ServerID(nil, c); err != nil || !bytes.Equal(got, sid) {
				t.Fatalf("ServerID(%x) = %x, %v; want %x", c, got, err, sid)
			}
		}
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
