package main

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestFileWatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spooky.yaml")
	write := func(s string) string {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])
	}
	loaded := write("a: 1\n")

	t.Run("a change between the load and the watch is seen by the first check", func(t *testing.T) {
		write("a: 2\n")
		w := newFileWatch(path, loaded)
		if !w.changed() {
			t.Fatal("the first check missed contents that differ from the loaded ones")
		}
		if w.changed() {
			t.Fatal("a second check of the same file reported a change")
		}
	})
	t.Run("rewriting the same contents is no change", func(t *testing.T) {
		sum := write("b: 1\n")
		w := newFileWatch(path, sum)
		write("b: 1\n")
		if w.changed() {
			t.Fatal("the same contents were reported as a change")
		}
	})
	t.Run("a missing file is no change", func(t *testing.T) {
		w := newFileWatch(filepath.Join(t.TempDir(), "gone.yaml"), loaded)
		if w.changed() {
			t.Fatal("a missing file was reported as a change")
		}
	})
}
