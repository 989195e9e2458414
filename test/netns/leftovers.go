package netns

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netns"
)

// RemoveLeftovers deletes the namespaces of labs whose creating process no
// longer exists (a run that crashed or was killed before its cleanup), after
// killing any process still inside them. Namespaces of live processes,
// including other test binaries running at the same time, are left alone.
func RemoveLeftovers() error {
	ents, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list /run/netns: %w", err)
	}
	var stale []string
	for _, e := range ents {
		pid, ok := labPID(e.Name())
		if ok && !processExists(pid) {
			stale = append(stale, e.Name())
		}
	}
	if len(stale) == 0 {
		return nil
	}
	var errs []error
	if err := killNamespaceProcesses(stale); err != nil {
		errs = append(errs, err)
	}
	for _, n := range stale {
		if err := netns.DeleteNamed(n); err != nil {
			errs = append(errs, fmt.Errorf("delete leftover namespace %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// labPID parses the creator's PID out of a lab namespace name
// "spk-<pid>-<n>-<host>".
func labPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, NamePrefix)
	if !ok {
		return 0, false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// processExists says whether pid is a live process. A zombie (killed, not
// yet reaped by its parent, e.g. a test binary killed by a timeout) counts
// as gone, although kill(pid, 0) still succeeds for it.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}
