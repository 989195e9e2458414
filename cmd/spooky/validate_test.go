package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runValidate runs `spooky validate` in-process with args and returns
// stdout, stderr and the exit code.
func runValidate(tb testing.TB, args ...string) (stdout, stderr string, code int) {
	tb.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"spooky", "validate"}, args...), env{stdout: &out, stderr: &errOut})
	return out.String(), errOut.String(), code
}

// mustWriteFile writes data to name in a fresh temporary directory and
// returns its path.
func mustWriteFile(tb testing.TB, name, data string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestValidateAcceptsTheExampleAndSummarizesIt(t *testing.T) {
	path := filepath.Join("..", "..", "examples", "spooky.yaml")
	out, errOut, code := runValidate(t, "-c", path)
	want := path + ": ok: 3 services (2 l4, 1 l7), 5 backends, 2 pools (4 upstreams)\n"
	if code != 0 || out != want || errOut != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0, %q, nothing", code, out, errOut, want)
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	path := mustWriteFile(t, "bad.yaml", `services:
  - name: web
    address: 198.18.0.300
    port: 70000
    backends:
      - {name: b1, address: 198.18.1.1, weight: 0}
`)
	out, errOut, code := runValidate(t, "--config", path)
	want := path + `:3:14: address: "198.18.0.300" is not an IP address
` + path + `:4:11: port: 70000 is out of range 1..65535
` + path + `:6:49: weight: must be positive, got 0
spooky: validate: ` + path + `: 3 problems
`
	if code != 1 || out != "" || errOut != want {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, no stdout, stderr:\n%s", code, out, errOut, want)
	}
}

func TestValidateReportsAnUnreadableFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.yaml")
	out, errOut, code := runValidate(t, "-c", path)
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "spooky: validate: read config: open "+path+": ") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestValidateRejectsAPositionalArgument(t *testing.T) {
	_, errOut, code := runValidate(t, "spooky.yaml")
	if code != 1 || !strings.Contains(errOut, `unexpected argument "spooky.yaml" (give the file with -c FILE)`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
