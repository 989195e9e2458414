package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	want := path + ": ok: 4 services (3 l4, 1 l7), 7 backends, 2 pools (4 upstreams)\n"
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

// runValidateBounded is runValidate that fails the test, instead of hanging
// it, if the command is still running after a minute (or half the time left
// to the test's deadline). The command returns at once when it is right, so
// only a hang comes near the limit.
func runValidateBounded(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	type result struct {
		stdout, stderr string
		code           int
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.stdout, r.stderr, r.code = runValidate(t, args...)
		done <- r
	}()
	wait := time.Minute
	if d, ok := t.Deadline(); ok {
		wait = min(wait, time.Until(d)/2)
	}
	select {
	case r := <-done:
		return r.stdout, r.stderr, r.code
	case <-time.After(wait):
		t.Fatalf("spooky validate %s still running after %v", strings.Join(args, " "), wait)
		return "", "", 0
	}
}

// mustFIFO makes a named pipe that nothing writes to. If a reader is still
// blocked on it when the test ends (the bug under test), the cleanup opens
// and closes the write end, which gives that reader end-of-file.
func mustFIFO(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "fifo.pem")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
	})
	return path
}

func TestValidateReturnsAnErrorForFilesThatOnceCrashedOrHungIt(t *testing.T) {
	key, err := filepath.Abs(filepath.Join("..", "..", "examples", "certs", "example.test.key"))
	if err != nil {
		t.Fatal(err)
	}
	fifo := mustFIFO(t)
	for _, tc := range []struct {
		name string
		path string
		want func(path string) string // stderr
	}{
		{
			name: "a merge key that includes itself is a problem, not a stack overflow",
			path: mustWriteFile(t, "self-merge.yaml", `services:
  - name: web
    address: 198.18.0.10
    port: 443
    <<: &m [*m]
    backends: [{name: b1, address: 198.18.1.1}]
`),
			want: func(path string) string {
				return path + ":5:13: merge key <<: alias *m names a list that contains it, so the merge never ends\n" +
					"spooky: validate: " + path + ": 1 problem\n"
			},
		},
		{
			name: "a certificate that is a FIFO is a problem, not a hang",
			path: mustWriteFile(t, "fifo-cert.yaml", `services:
  - name: edge
    address: 198.18.0.20
    port: 443
    mode: l7
    tls: [{server_names: [example.test], cert: `+fifo+`, key: `+key+`}]
    routes: [{pool: api}]
pools: [{name: api, upstreams: [{address: "h3://198.18.2.1"}]}]
`),
			want: func(path string) string {
				return path + ":6:48: cert: " + fifo + ": not a regular file (a named pipe)\n" +
					"spooky: validate: " + path + ": 1 problem\n"
			},
		},
		{
			name: "a config file that is a FIFO is refused, not waited on",
			path: fifo,
			want: func(path string) string {
				return "spooky: validate: read config: " + path + ": not a regular file (a named pipe)\n"
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runValidateBounded(t, "-c", tc.path)
			if want := tc.want(tc.path); code != 1 || out != "" || errOut != want {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, no stdout, stderr:\n%s", code, out, errOut, want)
			}
		})
	}
}
