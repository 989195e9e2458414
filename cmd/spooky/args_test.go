package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestCommandsRefuseAnInterfaceThatIsNotAName(t *testing.T) {
	dir := t.TempDir()
	// The pin root is not there: a command that touched anything would
	// make it or fail on it, and its error would not name the argument.
	root := filepath.Join(dir, "pins")
	commands := []struct {
		name string
		args []string
	}{
		// The config is not there either: the name is checked first.
		{"attach", []string{"attach", "-c", filepath.Join(dir, "none.yaml")}},
		{"detach", []string{"detach"}},
		{"stats", []string{"stats"}},
		{"decap attach", []string{"decap", "attach"}},
		{"decap detach", []string{"decap", "detach"}},
		{"xdp-pass attach", []string{"xdp-pass", "attach"}},
		{"xdp-pass detach", []string{"xdp-pass", "detach"}},
	}
	args := []struct {
		arg, problem string
	}{
		{"..", `invalid interface name "..": "." and ".." name directories, not interfaces`},
		{".", `invalid interface name ".": "." and ".." name directories, not interfaces`},
		{"a/b", `invalid interface name "a/b": it contains '/'`},
		{"../../tmp/x", `invalid interface name "../../tmp/x": it contains '/'`},
		{"", `invalid interface name "": it is empty`},
		{"abcdefghijklmnop", `invalid interface name "abcdefghijklmnop": it is 16 bytes long, the kernel allows at most 15`},
		{"eth0:1", `invalid interface name "eth0:1": it contains ':'`},
	}
	for _, cmd := range commands {
		for _, a := range args {
			t.Run(cmd.name+" refuses "+strconv.Quote(a.arg), func(t *testing.T) {
				argv := append(append([]string{"spooky"}, cmd.args...), "--pin-root", root, a.arg)
				var out, errOut bytes.Buffer
				code := run(context.Background(), argv, env{stdout: &out, stderr: &errOut})
				want := "spooky: " + cmd.name + ": " + a.problem + "\n"
				if code != 1 || out.Len() != 0 || errOut.String() != want {
					t.Errorf("exit %d, stdout %q, stderr %q; want 1, nothing, %q", code, out.String(), errOut.String(), want)
				}
				if _, err := os.Lstat(root); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("pin root %s: %v, want it untouched (absent)", root, err)
				}
			})
		}
	}
}
