package l7

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill cmd when the benchmark process dies
// (PR_SET_PDEATHSIG), so an interrupted run leaves no servers behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
