package main

import (
	"slices"
	"testing"
)

func TestFlagsMayFollowPositionalArguments(t *testing.T) {
	cmds := commands(env{})
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"a flag with a value after the interface moves before it",
			[]string{"spooky", "attach", "eth0", "-c", "f.yaml"},
			[]string{"spooky", "attach", "-c", "f.yaml", "eth0"}},
		{"a bool flag takes no value",
			[]string{"spooky", "stats", "eth0", "--json", "--pin-root", "/x"},
			[]string{"spooky", "stats", "--json", "--pin-root", "/x", "eth0"}},
		{"subcommands of subcommands are walked",
			[]string{"spooky", "decap", "attach", "eth0", "--xdp-mode=generic"},
			[]string{"spooky", "decap", "attach", "--xdp-mode=generic", "eth0"}},
		{"arguments after -- stay positional",
			[]string{"spooky", "cid", "decode", "--nonce-len", "4", "--", "-c"},
			[]string{"spooky", "cid", "decode", "--nonce-len", "4", "--", "-c"}},
		{"an unknown command is left to the parser",
			[]string{"spooky", "nope", "x", "-c", "y"},
			[]string{"spooky", "nope", "x", "-c", "y"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := interspersed(cmds, tt.args); !slices.Equal(got, tt.want) {
				t.Errorf("interspersed(%q) = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}
