package main

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
)

// runCLI runs spooky with args in-process and returns stdout, stderr and the
// exit code.
func runCLI(tb testing.TB, args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"spooky"}, args...), env{stdout: &out, stderr: &errOut})
	return out.String(), errOut.String(), code
}

const testKey = "8f95f09245765f80256934e50c66207f" // draft-21 Appendix B.2

func TestCIDCommandsPrintTheAppendixBVectors(t *testing.T) {
	tests := []struct {
		name                      string
		configID, sid, nonce, key string
		cid                       string
	}{
		{"a plaintext config copies the server ID", "0", "c4605e", "4504cc4f", "", "07c4605e4504cc4f"},
		{"a four-pass config encrypts", "0", "ed793a", "ee080dbf", testKey, "0720b1d07b359d3c"},
		{"a long server ID needs the fourth pass", "1", "ed793a51d49b8f5fab65", "ee080dbf48", testKey, "2fcc381bc74cb4fbad2823a3d1f8fed2"},
		{"sixteen octets take a single pass", "2", "ed793a51d49b8f5f", "ee080dbf48c0d1e5", testKey, "504dd2d05a7b0de9b2b9907afb5ecf8cc3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"cid", "encode", "--config-id", tt.configID, "--server-id", tt.sid, "--nonce", tt.nonce}
			if tt.key != "" {
				args = append(args, "--key", tt.key)
			}
			out, errOut, code := runCLI(t, args...)
			if code != 0 || out != tt.cid+"\n" || errOut != "" {
				t.Errorf("encode: exit %d, stdout %q, stderr %q; want 0, %q, nothing", code, out, errOut, tt.cid+"\n")
			}

			args = []string{"cid", "decode", "--config-id", tt.configID,
				"--server-id-len", strconv.Itoa(len(tt.sid) / 2), "--nonce-len", strconv.Itoa(len(tt.nonce) / 2)}
			if tt.key != "" {
				args = append(args, "--key", tt.key)
			}
			out, errOut, code = runCLI(t, append(args, tt.cid)...)
			if code != 0 || out != tt.sid+"\n" || errOut != "" {
				t.Errorf("decode: exit %d, stdout %q, stderr %q; want 0, %q, nothing", code, out, errOut, tt.sid+"\n")
			}
		})
	}
}

func TestCIDCommandsRejectBadInput(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"encode without a server ID says it is required", []string{"encode", "--config-id", "0", "--nonce", "01020304"}, "--server-id is required"},
		{"encode without a config ID says it is required", []string{"encode", "--server-id", "01", "--nonce", "01020304"}, "--config-id is required"},
		{"encode rejects a server ID that is not hex", []string{"encode", "--config-id", "0", "--server-id", "zz", "--nonce", "01020304"}, `--server-id: "zz" is not hex`},
		{"encode rejects an odd number of hex digits", []string{"encode", "--config-id", "0", "--server-id", "abc", "--nonce", "01020304"}, `--server-id: "abc" is not hex`},
		{"encode rejects a short nonce", []string{"encode", "--config-id", "0", "--server-id", "01", "--nonce", "010203"}, "nonce length 3, must be at least 4"},
		{"encode rejects lengths over 19 octets", []string{"encode", "--config-id", "0", "--server-id", "0102030405060708090a", "--nonce", "0102030405060708090a"}, "must be at most 19"},
		{"encode rejects the reserved codepoint 7", []string{"encode", "--config-id", "7", "--server-id", "01", "--nonce", "01020304"}, "--config-id 7: want 0..6"},
		{"encode rejects a short key", []string{"encode", "--config-id", "0", "--server-id", "01", "--nonce", "01020304", "--key", "0102"}, "key length 2 octets, must be 16"},
		{"encode rejects a stray argument", []string{"encode", "--config-id", "0", "--server-id", "01", "--nonce", "01020304", "extra"}, `unexpected argument "extra"`},
		{"decode wants a connection ID", []string{"decode", "--config-id", "0", "--server-id-len", "1", "--nonce-len", "4"}, "want one connection ID argument"},
		{"decode rejects a CID that is not hex", []string{"decode", "--config-id", "0", "--server-id-len", "1", "--nonce-len", "4", "0g"}, `connection ID: "0g" is not hex`},
		{"decode rejects a non-numeric length", []string{"decode", "--config-id", "0", "--server-id-len", "x", "--nonce-len", "4", "00"}, `invalid value "x" for flag -server-id-len`},
		{"decode says a short CID is not routable", []string{"decode", "--config-id", "0", "--server-id-len", "3", "--nonce-len", "4", "07c4605e"}, "not routable: too short for its config (4 octets, config needs 8)"},
		{"decode says a CID of another codepoint is not routable", []string{"decode", "--config-id", "1", "--server-id-len", "3", "--nonce-len", "4", "07c4605e4504cc4f"}, "no config for this config rotation codepoint (codepoint 0, --config-id 1)"},
		{"decode says codepoint 7 is not routable", []string{"decode", "--config-id", "0", "--server-id-len", "3", "--nonce-len", "4", "e7c4605e4504cc4f"}, "codepoint 0b111 is reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runCLI(t, append([]string{"cid"}, tt.args...)...)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if !strings.HasPrefix(errOut, "spooky: cid ") || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q, want \"spooky: cid ...\" containing %q", errOut, tt.wantErr)
			}
		})
	}
}
