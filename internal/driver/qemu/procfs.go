package qemu

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmssd/vmssd/internal/driver/hostproc"
)

// isInstanceQEMU reports whether pid is a live QEMU running in dir (the
// driver starts QEMU with the instance directory as its working directory),
// and returns its start time.
func isInstanceQEMU(pid int, dir string) (uint64, bool) {
	if pid <= 0 {
		return 0, false
	}
	st, err := hostproc.ReadStat(pid)
	if err != nil || st.Zombie() {
		return 0, false
	}
	p := "/proc/" + strconv.Itoa(pid)
	cwd, err := os.Readlink(p + "/cwd")
	if err != nil || filepath.Clean(cwd) != filepath.Clean(dir) {
		return 0, false
	}
	exe, err := os.Readlink(p + "/exe")
	if err != nil || !strings.Contains(filepath.Base(exe), "qemu") {
		return 0, false
	}
	return st.Start, true
}

// readPidfile reads a pid file QEMU wrote (0 if there is none).
func readPidfile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
