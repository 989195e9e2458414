package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spooky-lb/spooky/config"
)

// watchFlag is shared by attach and serve.
func watchFlag() *cli.DurationFlag {
	return &cli.DurationFlag{
		Name:  "watch",
		Usage: "check the config file every `DURATION` and reload when its contents change, as SIGHUP does (for a Kubernetes ConfigMap); 0 = off",
	}
}

// fileWatch notices a change of the config file's contents by polling it.
// A Kubernetes ConfigMap volume changes by swapping a symlink (..data), so
// the file is replaced without being written; a stat of the path, which
// follows the symlinks, sees that like any other change, whichever
// directory the swap happened in. The contents are read only when the
// stat changes, and compared by hash, so touching the file reloads nothing.
type fileWatch struct {
	path string
	sig  fileSig
	sum  string // hex SHA-256 of the contents last read
}

// fileSig is what a stat says of a file's identity and contents.
type fileSig struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func statSig(path string) (fileSig, bool) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return fileSig{}, false
	}
	s := fileSig{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = st.Dev, st.Ino
	}
	return s, true
}

// newFileWatch watches path, whose loaded contents hash to sum (the
// running config's Config.SHA256). The first check reads the file whatever
// its stat says: it may have changed between the load and the watch.
func newFileWatch(path, sum string) *fileWatch {
	return &fileWatch{path: path, sum: sum}
}

// changed reports whether the file's contents differ from the last seen.
// A file that is missing, not regular or over the config size limit counts
// as unchanged: a reload could only reject it, and the next good version
// is seen when it arrives.
func (w *fileWatch) changed() bool {
	sig, ok := statSig(w.path)
	if !ok || sig == w.sig {
		return false
	}
	w.sig = sig
	f, err := os.Open(w.path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, config.MaxFileSize+1))
	if err != nil || n > config.MaxFileSize {
		return false
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if sum == w.sum {
		return false
	}
	w.sum = sum
	return true
}
