package deploy

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// containerTool is the first of podman and docker on PATH, or "".
func containerTool() string {
	for _, t := range []string{"podman", "docker"} {
		if _, err := exec.LookPath(t); err == nil {
			return t
		}
	}
	return ""
}

func mustRun(tb testing.TB, name string, args ...string) []byte {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// TestImage builds the image as `make image` does, checks that it holds
// one static binary and runs as a non-root user, and, where the tool can run
// containers here, runs `spooky validate` in it on examples/spooky.yaml.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a container image")
	}
	tool := containerTool()
	if tool == "" {
		t.Skip("neither podman nor docker is installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	image := "localhost/spooky-test:" + strings.ToLower(filepath.Base(t.TempDir()))
	mustRun(t, "make", "-C", root, "image", "IMAGE="+image, "IMAGE_TOOL="+tool)
	t.Cleanup(func() { exec.Command(tool, "rmi", "-f", image).Run() })

	t.Run("the image runs as a non-root user", func(t *testing.T) {
		user := strings.TrimSpace(string(mustRun(t, tool, "image", "inspect", "--format", "{{.Config.User}}", image)))
		if user == "" || user == "0" || strings.HasPrefix(user, "0:") || user == "root" {
			t.Errorf("image user %q, want a non-root one", user)
		}
	})

	t.Run("the image holds a static spooky and nothing else", func(t *testing.T) {
		id := strings.TrimSpace(string(mustRun(t, tool, "create", image)))
		defer exec.Command(tool, "rm", "-f", id).Run()
		tr := tar.NewReader(bytes.NewReader(mustRun(t, tool, "export", id)))
		var bin []byte
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			switch name := strings.TrimPrefix(h.Name, "./"); {
			case name == "usr/local/bin/spooky":
				if bin, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			case h.Typeflag == tar.TypeReg:
				// Runtimes add empty mount points (etc/hosts, ...) on create.
				if h.Size > 0 {
					t.Errorf("unexpected file %s (%d bytes) in the image", name, h.Size)
				}
			}
		}
		if bin == nil {
			t.Fatal("no /usr/local/bin/spooky in the image")
		}
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("/usr/local/bin/spooky: %v", err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("/usr/local/bin/spooky is dynamically linked: FROM scratch has no loader")
			}
		}
	})

	t.Run("spooky validate passes the example config inside the image", func(t *testing.T) {
		// A run the runtime cannot set up (this sandbox lacks
		// CAP_SYS_RESOURCE and mounts cgroups v1 and v2 together) is the
		// machine's limit, not the image's; only those errors skip. A
		// missing or dynamic binary fails the subtest above.
		probe, err := exec.Command(tool, "run", "--rm", "--network=none", image, "help").CombinedOutput()
		if err != nil && (bytes.Contains(probe, []byte("setrlimit")) || bytes.Contains(probe, []byte("cgroup"))) {
			t.Skipf("%s builds images here but cannot run containers: %s", tool, bytes.TrimSpace(probe))
		}
		examples := filepath.Join(root, "examples")
		if _, err := os.Stat(filepath.Join(examples, "spooky.yaml")); err != nil {
			t.Fatal(err)
		}
		// Mount examples/ whole: spooky.yaml names its certificates by
		// paths relative to itself.
		out := mustRun(t, tool, "run", "--rm", "--network=none", "-v", examples+":/config:ro,z",
			image, "validate", "-c", "/config/spooky.yaml")
		if !strings.Contains(string(out), "ok:") {
			t.Errorf("spooky validate in the image printed %q, want ok", out)
		}
	})
}
