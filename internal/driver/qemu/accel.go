package qemu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
	// AccelAuto picks KVM when it is proven usable, TCG otherwise (see
	// DetectAccel).
	AccelAuto = "auto"
)

// hostProbe is what DetectAccel looks at, injectable for tests.
type hostProbe struct {
	openKVM func() error           // opens /dev/kvm read-write
	cpuinfo func() ([]byte, error) // /proc/cpuinfo
	module  func(name string) bool // /sys/module/<name> exists
}

var realHost = hostProbe{
	openKVM: func() error {
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		if err != nil {
			return err
		}
		return f.Close()
	},
	cpuinfo: func() ([]byte, error) { return os.ReadFile("/proc/cpuinfo") },
	module: func(name string) bool {
		_, err := os.Stat("/sys/module/" + name)
		return err == nil
	},
}

var detectOnce = sync.OnceValues(func() (string, string) { return detectAccel(realHost) })

// DetectAccel says how this host can accelerate virtual machines, and why,
// in a sentence fit for a log. It picks KVM only when it is proven usable:
// /dev/kvm opens read-write, the CPU has the vmx or svm flag, and kvm_intel
// or kvm_amd is loaded. A /dev/kvm served by another backend (kvm_pvm, the
// paravirtual backend of some nested clouds, on which QEMU starts but a
// stock kernel hangs forever) means TCG. The answer is computed once.
func DetectAccel() (accel, reason string) { return detectOnce() }

func detectAccel(h hostProbe) (string, string) {
	var why []string
	if h.module("kvm_pvm") {
		why = append(why, "kvm_pvm")
	}
	if err := h.openKVM(); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			why = append(why, "no /dev/kvm")
		} else {
			why = append(why, fmt.Sprintf("/dev/kvm: %v", err))
		}
	}
	info, err := h.cpuinfo()
	if err != nil {
		why = append(why, fmt.Sprintf("cannot read /proc/cpuinfo: %v", err))
	} else if !cpuHasVirt(info) {
		why = append(why, "the CPU has no vmx/svm flag")
	}
	module := ""
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if h.module(m) {
			module = m
		}
	}
	if module == "" {
		why = append(why, "neither kvm_intel nor kvm_amd is loaded")
	}
	if len(why) > 0 {
		return AccelTCG, "KVM is not usable here (" + strings.Join(why, "; ") + "); using TCG software emulation"
	}
	return AccelKVM, "KVM is usable (" + module + "); using hardware acceleration"
}

// cpuHasVirt reports whether a /proc/cpuinfo lists the vmx or svm flag.
func cpuHasVirt(cpuinfo []byte) bool {
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for f := range strings.FieldsSeq(val) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
	}
	return false
}
