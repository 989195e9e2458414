package cid

import (
	"bytes"
	"crypto/aes"
	"testing"
)

func mustCodec(tb testing.TB, cfg Config) *codec {
	tb.Helper()
	c, err := newCodec(cfg)
	if err != nil {
		tb.Fatalf("new codec %+v: %v", cfg, err)
	}
	return c
}

func TestExpandMatchesTheDraftExample(t *testing.T) {
	// draft-21 §5.4.2.2: expand(0x06, 0x02, 0xaaba3c).
	c := mustCodec(t, Config{ServerIDLen: 2, NonceLen: 4})
	var buf [aes.BlockSize]byte
	c.expand(&buf, loadHalf(mustHex(t, "aaba3c")), 2)
	if want := mustHex(t, "aaba3c00000000000000000000000602"); !bytes.Equal(buf[:], want) {
		t.Errorf("expand = %x, want %x", buf, want)
	}
}

func TestSplitGivesTheMiddleNibblesToEachHalf(t *testing.T) {
	// draft-21 §5.4.2.3 step 2: 0x7040b81b55ccf3 splits into 0x7040b810
	// and 0x0b55ccf3.
	c := mustCodec(t, Config{ServerIDLen: 3, NonceLen: 4})
	l, r := c.split(mustHex(t, "7040b81b55ccf3"))
	if got, want := l.bytes(), mustHex(t, "7040b810000000000000000000000000"); !bytes.Equal(got[:], want) {
		t.Errorf("left_0 = %x, want %x", got, want)
	}
	if got, want := r.bytes(), mustHex(t, "0b55ccf3000000000000000000000000"); !bytes.Equal(got[:], want) {
		t.Errorf("right_0 = %x, want %x", got, want)
	}
	out := make([]byte, 7)
	c.join(out, l, r)
	if want := mustHex(t, "7040b81b55ccf3"); !bytes.Equal(out, want) {
		t.Errorf("join(split(x)) = %x, want %x", out, want)
	}
}

// TestFourPassFollowsTheWorkedExample replays draft-21 §5.4.2.4 step by step
// and checks every intermediate value the draft prints.
func TestFourPassFollowsTheWorkedExample(t *testing.T) {
	cfg := Config{ID: 0, ServerIDLen: 3, NonceLen: 4, Key: mustHex(t, "fdf726a9893ec05c0632d3956680baf0")}
	c := mustCodec(t, cfg)
	if c.mode != modeFour || c.plen != 7 || c.half != 4 || !c.odd {
		t.Fatalf("codec = mode %d plen %d half %d odd %v, want four-pass, 7, 4, odd", c.mode, c.plen, c.half, c.odd)
	}
	var buf [aes.BlockSize]byte
	check := func(step string, got []byte, want string) {
		t.Helper()
		if w := mustHex(t, want); !bytes.Equal(got, w) {
			t.Errorf("%s = %x, want %x", step, got, w)
		}
	}
	// checkHalf checks a half's half_len octets and that the rest are zero.
	checkHalf := func(step string, h half, want string) {
		t.Helper()
		b := h.bytes()
		check(step, b[:], want+"000000000000000000000000")
	}
	// pass runs one round on in, checks the AES input and output the draft
	// prints, and returns dst XOR the output, not yet cleared.
	pass := func(dst, in half, p uint64, aesIn, aesOut string) half {
		t.Helper()
		c.expand(&buf, in, p)
		check("aes_input", buf[:], aesIn)
		c.block.Encrypt(buf[:], buf[:])
		check("aes_output", buf[:], aesOut)
		// Truncate to half_len, as the draft does, before the XOR.
		return dst.xor(loadHalf(buf[:c.half]))
	}

	l, r := c.split(mustHex(t, "31441a9c69c275")) // steps 1-2
	checkHalf("left_0", l, "31441a90")
	checkHalf("right_0", r, "0c69c275")

	r = pass(r, l, 1, "31441a90000000000000000000000701", "a255dd8cdacf01948d3a848c3c7fee23")
	checkHalf("right_1 before clearing", r, "ae3c1ff9")
	r = r.and(c.rightMask)
	checkHalf("right_1", r, "0e3c1ff9")

	l = pass(l, r, 2, "0e3c1ff9000000000000000000000702", "e5e452cb9e1bedb0b2bf830506bf4c4e")
	checkHalf("left_1 before clearing", l, "d4a0485b")
	l = l.and(c.leftMask)
	checkHalf("left_1", l, "d4a04850")

	r = pass(r, l, 3, "d4a04850000000000000000000000703", "b7821ab3024fed0913b6a04d18e3216f")
	checkHalf("right_2 before clearing", r, "b9be054a")
	r = r.and(c.rightMask)
	checkHalf("right_2", r, "09be054a")

	// Step 10 prints the truncated AES output as 0xb3e4357c, a typo for the
	// 0xb334357c it printed a line above; its XOR result, 0x67947d2c, is
	// computed from the latter.
	l = pass(l, r, 4, "09be054a000000000000000000000704", "b334357cfdf81e3fafe180154eaf7378")
	checkHalf("left_2 before clearing", l, "67947d2c")
	l = l.and(c.leftMask)
	checkHalf("left_2", l, "67947d20")

	out := make([]byte, 7)
	c.join(out, l, r) // step 12
	check("ciphertext", out, "67947d29be054a")

	// And the same through the public API.
	e := mustEncoder(t, cfg, mustHex(t, "31441a"))
	got, err := e.Encode(nil, mustHex(t, "9c69c275"))
	if err != nil {
		t.Fatal(err)
	}
	check("cid", got, "0767947d29be054a")
	sid, err := mustDecoder(t, cfg).ServerID(nil, got)
	if err != nil {
		t.Fatal(err)
	}
	check("decoded server ID", sid, "31441a")
}
