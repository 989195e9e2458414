package config

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mustFinish runs f and fails the test if f is still running at the test's
// deadline (or after a minute): f must never block, and does its work at
// once when it is right, so only a hang gets anywhere near the limit.
func mustFinish(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	wait := time.Minute
	if d, ok := t.Deadline(); ok {
		wait = min(wait, time.Until(d)/2)
	}
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatalf("%s still blocked after %v", what, wait)
	}
}

// mustFIFO makes a named pipe that nothing writes to. If a reader is still
// blocked on it when the test ends (the bug under test), the cleanup opens
// and closes the write end, which gives that reader end-of-file and lets it
// go.
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

// mustSparseFile makes a file of size bytes that takes no disk space.
func mustSparseFile(tb testing.TB, name string, size int64) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestReadPEMFileReadsOnlyRegularFilesOfBoundedSize(t *testing.T) {
	dir := t.TempDir()
	pemPath := filepath.Join(dir, "ok.pem")
	if err := os.WriteFile(pemPath, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := mustFIFO(t)
	link := filepath.Join(dir, "link.pem")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		path string
		want error // nil: the file's contents
		msg  string
	}{
		{"a regular file is read", pemPath, nil, ""},
		{"a file of exactly the limit is read", mustSparseFile(t, "max.pem", MaxPEMFileSize), nil, ""},
		{"a file one byte over the limit is refused unread", mustSparseFile(t, "big.pem", MaxPEMFileSize+1), ErrFileTooLarge,
			": file too large: 1048577 bytes; the limit is 1048576 bytes"},
		{"a FIFO is refused without waiting for a writer", fifo, ErrNotRegularFile, ": not a regular file (a named pipe)"},
		{"a symlink is judged by what it opens, here a FIFO", link, ErrNotRegularFile, ": not a regular file (a named pipe)"},
		{"a device is refused unread", "/dev/zero", ErrNotRegularFile, "/dev/zero: not a regular file (a character device)"},
		{"a directory is refused", dir, ErrNotRegularFile, ": not a regular file (a directory)"},
		{"a missing file is not-exist", filepath.Join(dir, "missing.pem"), fs.ErrNotExist, ": no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var data []byte
			var err error
			mustFinish(t, "ReadPEMFile("+tc.path+")", func() { data, err = ReadPEMFile(tc.path) })
			if tc.want == nil {
				want, rerr := os.ReadFile(tc.path)
				if err != nil || rerr != nil || !bytes.Equal(data, want) {
					t.Fatalf("ReadPEMFile = %d bytes, %v; want the file's %d bytes", len(data), err, len(want))
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.HasSuffix(err.Error(), tc.msg) || data != nil {
				t.Fatalf("ReadPEMFile = %d bytes, %v; want an error wrapping %v ending %q", len(data), err, tc.want, tc.msg)
			}
		})
	}
}

func TestLoadRefusesFilesItCannotReadSafely(t *testing.T) {
	huge := mustSparseFile(t, "huge.yaml", 50<<20)
	for _, tc := range []struct {
		name string
		path string
		want error
		msg  string
	}{
		{"a 50 MiB file is refused unread, naming both sizes", huge, ErrFileTooLarge,
			"read config: " + huge + ": file too large: 50 MiB; the limit is 1 MiB"},
		{"a FIFO is refused without waiting for a writer", mustFIFO(t), ErrNotRegularFile, "not a regular file (a named pipe)"},
		{"a device is refused unread", "/dev/zero", ErrNotRegularFile, "read config: /dev/zero: not a regular file (a character device)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c *Config
			var err error
			mustFinish(t, "Load("+tc.path+")", func() { c, err = Load(tc.path) })
			var es Errors
			if c != nil || !errors.Is(err, tc.want) || errors.As(err, &es) || !strings.HasSuffix(err.Error(), tc.msg) {
				t.Fatalf("Load = %v, %v; want a plain error wrapping %v ending %q", c != nil, err, tc.want, tc.msg)
			}
		})
	}
}
