package netns

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Command returns an unstarted command that runs name with args inside the
// host's network namespace (and, with [HostOptions.MountNS], inside the host's
// mount namespace, whose /sys and bpffs all its commands share).
//
// It goes through `nsenter --net=/run/netns/NS`, which enters the namespace
// and execs name, so cmd.Process is the program itself. Unlike `ip netns
// exec`, nsenter leaves /sys alone. The process gets its own process group
// and SIGKILL when the thread that started it dies; the lab kills it, and
// anything else left in its namespaces, at teardown. With MountNS the
// working directory is carried over explicitly (entering a mount namespace
// resets it to /), so set cmd.Dir only to an absolute path or not at all.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	nsArgs := []string{"--net=" + h.Path()}
	if h.holderPID != 0 {
		wd, err := os.Getwd()
		if err != nil {
			wd = "/"
		}
		nsArgs = append(nsArgs,
			"--mount=/proc/"+strconv.Itoa(h.holderPID)+"/ns/mnt",
			"--wd="+wd)
	}
	cmd := exec.Command("nsenter", append(append(nsArgs, "--", name), args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	h.lab.track(cmd)
	return cmd
}

// HasMountNS says whether the host has a mount namespace of its own
// ([HostOptions.MountNS]).
func (h *Host) HasMountNS() bool { return h.holderPID != 0 }

// mountHolderScript runs inside the host's network namespace and a new private
// mount namespace: a sysfs mounted from inside the network namespace shows the
// host's own links under /sys/class/net, and a bpffs on top of it keeps pins
// for as long as the holder lives. The lab namespaces' bind mounts copied
// into the new mount namespace are dropped, so that copy does not keep other
// labs' namespaces alive.
const mountHolderScript = `set -e
for f in /run/netns/*; do umount -l "$f" 2>/dev/null || true; done
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t bpf -o mode=0700 bpf /sys/fs/bpf
echo ready
exec sleep infinity`

func (h *Host) startMountHolder() error {
	cmd := exec.Command("nsenter", "--net="+h.Path(), "--",
		"unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", mountHolderScript)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("mount namespace holder for %s: %w", h.Name, err)
	}
	h.lab.track(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start mount namespace holder for %s: %w", h.Name, err)
	}
	h.lab.mu.Lock()
	h.lab.holderFns = append(h.lab.holderFns, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	h.lab.mu.Unlock()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		return fmt.Errorf("mount namespace holder for %s did not start: %q %v: %s", h.Name, line, err, stderr.String())
	}
	h.holderPID = cmd.Process.Pid
	return nil
}

// killNamespaceProcesses SIGKILLs every process whose network namespace is
// one of the named ones (as `ip netns pids` finds them) and waits, up to a
// deadline, until none is left.
func killNamespaceProcesses(names []string) error {
	inodes := make(map[uint64]string)
	for _, n := range names {
		var st syscall.Stat_t
		if err := syscall.Stat("/run/netns/"+n, &st); err == nil {
			inodes[st.Ino] = n
		}
	}
	if len(inodes) == 0 {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := namespacePIDs(inodes)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still in lab namespaces after SIGKILL", pids)
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// namespacePIDs lists the live processes in the network namespaces whose
// nsfs inodes are given. Zombies have no namespaces and are not listed.
func namespacePIDs(inodes map[uint64]string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if _, ok := inodes[st.Ino]; ok {
			pids = append(pids, pid)
		}
	}
	return pids
}
