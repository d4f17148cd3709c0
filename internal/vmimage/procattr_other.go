//go:build !unix

package vmimage

import "os/exec"

// setProcessGroup does nothing here: guests only build on Linux.
func setProcessGroup(*exec.Cmd) {}
