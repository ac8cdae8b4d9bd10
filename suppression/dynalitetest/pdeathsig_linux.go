package dynalitetest

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel kill the emulator when the test binary dies
// without running its cleanups (a timeout panic, a kill).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
