package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Errors for files spooky refuses to read; callers can branch on them with
// errors.Is.
var (
	// ErrNotRegularFile means the path names a FIFO, device, directory or
	// socket. Reading those can block forever (a FIFO with no writer) or
	// never end (/dev/zero).
	ErrNotRegularFile = errors.New("not a regular file")
	// ErrFileTooLarge means the file is larger than its limit (MaxFileSize,
	// MaxPEMFileSize).
	ErrFileTooLarge = errors.New("file too large")
)

// ReadPEMFile reads a certificate, key or CA file named in the
// configuration: a regular file of at most MaxPEMFileSize bytes. It never
// blocks on a FIFO or reads a device. Validation and the request tier both
// read these files through it, so what validate accepts, a reload can load.
func ReadPEMFile(path string) ([]byte, error) {
	return readRegularFile(path, MaxPEMFileSize)
}

// readRegularFile reads path if it is a regular file of at most limit bytes.
// It opens with O_NONBLOCK, so that opening a FIFO returns at once instead
// of waiting for a writer (fifo(7)), and checks the type of what it opened
// (fstat), not of what the path named a moment before, so a swapped file
// cannot slip past. O_NONBLOCK does not change reads of a regular file.
func readRegularFile(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err // *fs.PathError: "open PATH: ..."
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w (%s)", path, ErrNotRegularFile, fileKind(fi.Mode()))
	}
	if fi.Size() > limit {
		size, lim := sizeText(fi.Size(), limit)
		return nil, fmt.Errorf("%s: %w: %s; the limit is %s", path, ErrFileTooLarge, size, lim)
	}
	// Read one byte past the limit to catch a file that grows, or one whose
	// size stat does not report (/proc).
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w: more than the limit, %s", path, ErrFileTooLarge, humanSize(limit))
	}
	return data, nil
}

// fileKind names what a non-regular file is, for error messages.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "an irregular file"
}
