package cid

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	key := make([]byte, KeyLen)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring naming the problem; "" means valid
	}{
		{"smallest plaintext config is valid", Config{ID: 0, ServerIDLen: 1, NonceLen: 4}, ""},
		{"largest encrypted config is valid", Config{ID: 6, ServerIDLen: 15, NonceLen: 4, Key: key}, ""},
		{"single-pass config is valid", Config{ID: 2, ServerIDLen: 8, NonceLen: 8, Key: key}, ""},
		{"codepoint 7 is reserved", Config{ID: 7, ServerIDLen: 1, NonceLen: 4}, "config ID 7"},
		{"codepoint above 7 is rejected", Config{ID: 200, ServerIDLen: 1, NonceLen: 4}, "config ID 200"},
		{"empty server ID is rejected", Config{ServerIDLen: 0, NonceLen: 4}, "server ID length 0"},
		{"negative server ID length is rejected", Config{ServerIDLen: -1, NonceLen: 4}, "server ID length -1"},
		{"nonce under 4 octets is rejected", Config{ServerIDLen: 1, NonceLen: 3}, "nonce length 3"},
		{"lengths over 19 octets are rejected", Config{ServerIDLen: 10, NonceLen: 10}, "= 20"},
		{"short key is rejected", Config{ServerIDLen: 1, NonceLen: 4, Key: make([]byte, 15)}, "key length 15"},
		{"empty non-nil key is rejected", Config{ServerIDLen: 1, NonceLen: 4, Key: []byte{}}, "key length 0"},
		{"AES-256 key is rejected", Config{ServerIDLen: 1, NonceLen: 4, Key: make([]byte, 32)}, "key length 32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate() = %v, does not wrap ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigLenCountsFirstOctetServerIDAndNonce(t *testing.T) {
	if got := (Config{ServerIDLen: 3, NonceLen: 4}).Len(); got != 8 {
		t.Errorf("Len() = %d, want 8", got)
	}
	if got := (Config{ServerIDLen: 15, NonceLen: 4}).Len(); got != MaxCIDLen {
		t.Errorf("Len() = %d, want %d", got, MaxCIDLen)
	}
}
