package forwarder

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ifNameSize is IFNAMSIZ (<linux/if.h>): the kernel's buffer for an
// interface name, the terminating NUL included.
const ifNameSize = 16

// CheckInterfaceName returns an error wrapping ErrInterfaceName unless name
// is one the kernel accepts for a network interface (dev_valid_name in
// net/core/dev.c): not empty, shorter than IFNAMSIZ, not "." or "..", and
// without '/', ':' or whitespace. spooky names a pin directory after the
// interface, so anything else could be a path out of the pin root.
func CheckInterfaceName(name string) error {
	var problem string
	switch {
	case name == "":
		problem = "it is empty"
	case len(name) >= ifNameSize:
		problem = fmt.Sprintf("it is %d bytes long, the kernel allows at most %d", len(name), ifNameSize-1)
	case name == "." || name == "..":
		problem = `"." and ".." name directories, not interfaces`
	default:
		for i := 0; i < len(name); i++ {
			if c := name[i]; c == '/' || c == ':' || c == 0 || isKernelSpace(c) {
				problem = fmt.Sprintf("it contains %q", rune(c))
				break
			}
		}
	}
	if problem == "" {
		return nil
	}
	return fmt.Errorf("%w %q: %s", ErrInterfaceName, name, problem)
}

// isKernelSpace is the kernel's isspace (lib/ctype.c), which also counts
// 0xa0 (Latin-1 no-break space).
func isKernelSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r') || c == 0xa0
}

// pinDirError is a pin directory spooky refuses to use; it says why and
// what to do about it.
type pinDirError string

func (e pinDirError) Error() string        { return string(e) }
func (e pinDirError) Is(target error) bool { return target == ErrUnsafePinDir }

// pinDir returns the directory root/sub[0]/sub[1]/... (root is
// DefaultPinRoot if empty), after checking that root and every directory
// below it is one spooky can trust (checkPinDir). Whoever else could write
// to one of them could rename spooky's pins away, so that a restart
// attaches a second program and detach misses the first, or plant pins of
// their own.
//
// With create, missing directories are made, mode 0700, and returned in
// created so that a failed attach can take them back. Without it, a
// missing one is an error wrapping fs.ErrNotExist.
func pinDir(root string, create bool, sub ...string) (dir string, created []string, err error) {
	root, err = filepath.Abs(rootOrDefault(root))
	if err != nil {
		return "", nil, fmt.Errorf("pin root: %w", err)
	}
	if err := checkBPFFS(root); err != nil {
		return "", nil, err
	}
	if create {
		// The root's parents (/sys/fs/bpf itself: mode 1777, sticky) are
		// the operator's; only the root and what is below it are spooky's.
		if err := os.MkdirAll(filepath.Dir(root), 0o700); err != nil {
			return "", nil, privilege(fmt.Errorf("create pin root %s: %w", root, err))
		}
	}
	dir = root
	for i := -1; i < len(sub); i++ {
		what := "pin root"
		if i >= 0 {
			what = "pin directory"
			// Each part is one directory entry (an interface name or
			// "decap"), so dir stays below root.
			if s := sub[i]; s == "" || s == "." || s == ".." || strings.ContainsRune(s, '/') {
				return "", created, fmt.Errorf("pin directory %q: not a single path element", s)
			}
			dir = filepath.Join(dir, sub[i])
		}
		fi, err := os.Lstat(dir)
		if errors.Is(err, fs.ErrNotExist) && create {
			switch err := os.Mkdir(dir, 0o700); {
			case err == nil:
				created = append(created, dir)
			case !errors.Is(err, fs.ErrExist): // lost a race: check the winner's
				return "", created, privilege(fmt.Errorf("create %s %s: %w", what, dir, err))
			}
			fi, err = os.Lstat(dir)
		}
		if err != nil {
			return "", created, privilege(fmt.Errorf("%s: %w", what, err))
		}
		if err := checkPinDir(what, dir, fi); err != nil {
			return "", created, err
		}
	}
	if err := checkUnder(root, dir); err != nil {
		return "", created, err
	}
	return dir, created, nil
}

// checkPinDir fails unless fi (of path) is a directory, not a symlink,
// owned by the uid spooky runs as and writable by that uid alone.
func checkPinDir(what, path string, fi fs.FileInfo) error {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return pinDirError(fmt.Sprintf("%s %s is a symlink; remove it (spooky follows no links there)", what, path))
	}
	if !fi.IsDir() {
		return pinDirError(fmt.Sprintf("%s %s is not a directory; remove it", what, path))
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s %s: no owner in its file info", what, path)
	}
	switch uid := os.Geteuid(); {
	case int(st.Uid) == uid:
	case st.Uid == 0:
		// Root's pins: the fix is privilege, not a chown.
		return pinDirError(fmt.Sprintf("%s %s is owned by root, not uid %d that spooky runs as; run it as root", what, path, uid))
	case uid == 0:
		return pinDirError(fmt.Sprintf("%s %s is owned by uid %d; remove it or chown it to root", what, path, st.Uid))
	default:
		return pinDirError(fmt.Sprintf("%s %s is owned by uid %d; remove it or chown it to uid %d", what, path, st.Uid, uid))
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return pinDirError(fmt.Sprintf("%s %s is writable by group or others (mode %04o); remove it or chmod it 0700", what, path, perm))
	}
	return nil
}

// checkUnder fails unless dir, with every symlink resolved, lies below
// root. pinDir's checks already imply it; this holds even if they are
// changed.
func checkUnder(root, dir string) error {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return fmt.Errorf("resolve pin root: %w", err)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("resolve pin directory: %w", err)
	}
	if realDir != realRoot && !strings.HasPrefix(realDir, realRoot+string(filepath.Separator)) {
		return pinDirError(fmt.Sprintf("pin directory %s resolves to %s, outside the pin root %s", dir, realDir, realRoot))
	}
	return nil
}

// removeCreated takes back the directories pinDir created, deepest first,
// if they are still empty: a failed attach (say, without privilege) must
// not leave a pin root behind that a later one refuses as someone else's.
func removeCreated(created []string) {
	for i := len(created) - 1; i >= 0; i-- {
		os.Remove(created[i]) // fails, as it should, if something was pinned
	}
}
