package bpf

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// bpfBuild is one program as a //go:generate line in gen.go builds it.
type bpfBuild struct {
	source string   // the .c file, relative to bpf/
	cflags []string // what bpf2go passes to clang after "--"
}

// mustGenerateLines reads the bpf2go invocations from gen.go, so the tests
// below check the flags the objects are really built with.
func mustGenerateLines(tb testing.TB) []bpfBuild {
	tb.Helper()
	src, err := os.ReadFile("gen.go")
	if err != nil {
		tb.Fatal(err)
	}
	var builds []bpfBuild
	for _, line := range strings.Split(string(src), "\n") {
		if !strings.HasPrefix(line, "//go:generate ") || !strings.Contains(line, "bpf2go") {
			continue
		}
		args, flags, ok := strings.Cut(strings.TrimSuffix(line, `"`), " -- ")
		if !ok {
			tb.Fatalf("gen.go: a bpf2go line without \" -- \" before the C flags: %s", line)
		}
		fields := strings.Fields(args)
		source := fields[len(fields)-1]
		if !strings.HasSuffix(source, ".c") {
			tb.Fatalf("gen.go: a bpf2go line whose last argument is not a .c file: %s", line)
		}
		builds = append(builds, bpfBuild{source: source, cflags: strings.Fields(flags)})
	}
	if len(builds) == 0 {
		tb.Fatal("gen.go has no bpf2go lines")
	}
	return builds
}

// mustClang finds the clang make generate uses, or skips: the committed
// objects mean building and testing need none, and CI installs it for make
// check-generate.
func mustClang(tb testing.TB) string {
	tb.Helper()
	name := os.Getenv("BPF_CLANG")
	if name == "" {
		name = "clang-19"
	}
	path, err := exec.LookPath(name)
	if err != nil {
		tb.Skipf("%s is not installed (apt-get install clang-19 llvm-19; .ci/run does); skipping the BPF header checks", name)
	}
	return path
}

// Every header a program includes is one of bpf/include/*.h or the vendored
// bpf/headers/, never the host's /usr/include or clang's resource headers:
// that is what lets make check-generate expect the same bytes on every
// machine (headers/README.md).
func TestBPFProgramsIncludeOnlyHeadersFromTheRepository(t *testing.T) {
	clang := mustClang(t)
	for _, b := range mustGenerateLines(t) {
		t.Run(b.source, func(t *testing.T) {
			if !slices.Contains(b.cflags, "-nostdinc") {
				t.Errorf("gen.go builds %s without -nostdinc, so clang would search the host's /usr/include: %v", b.source, b.cflags)
			}
			// -M lists every file the preprocessor opened, system
			// headers included (unlike -MM).
			args := append([]string{"-target", "bpfel", "-M"}, b.cflags...)
			out, err := exec.Command(clang, append(args, b.source)...).Output()
			if err != nil {
				t.Fatalf("%s -M %s: %v\n%s", clang, b.source, err, stderrOf(err))
			}
			deps := strings.Fields(strings.ReplaceAll(string(out), "\\\n", " "))
			if len(deps) < 2 || !strings.HasSuffix(deps[0], ":") {
				t.Fatalf("clang -M printed no make rule: %q", out)
			}
			for _, dep := range deps[1:] {
				if filepath.IsAbs(dep) || strings.HasPrefix(filepath.Clean(dep), "..") {
					t.Errorf("%s includes %s, outside bpf/: vendor it in bpf/headers/ (see headers/README.md)", b.source, dep)
				}
			}
		})
	}
}

// The flags really hide the host: a libc header, which every build host has
// in /usr/include, is not found, while the vendored UAPI ones are. Without
// this a wrong -I could pass the test above only because no program happens
// to include a host-only header yet.
func TestBPFFlagsHideTheHostsHeaders(t *testing.T) {
	clang := mustClang(t)
	flags := mustGenerateLines(t)[0].cflags
	compile := func(src string) ([]byte, error) {
		args := append([]string{"-target", "bpfel", "-fsyntax-only"}, flags...)
		cmd := exec.Command(clang, append(args, "-x", "c", "-")...)
		cmd.Stdin = strings.NewReader(src)
		return cmd.CombinedOutput()
	}
	if out, err := compile("#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"); err != nil {
		t.Fatalf("the vendored headers do not compile with gen.go's flags %v: %v\n%s", flags, err, out)
	}
	out, err := compile("#include <sys/types.h>\n")
	if err == nil {
		t.Fatalf("<sys/types.h> compiled with gen.go's flags %v: the host's /usr/include is still searched", flags)
	}
	if !bytes.Contains(out, []byte("file not found")) {
		t.Fatalf("<sys/types.h> failed for another reason than not being found: %s", out)
	}
}

func stderrOf(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}
