package qemu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vmssd/vmssd/internal/driver"
)

// Size is what a VM size gives a virtual machine.
type Size struct {
	VCPUs    int `json:"vcpus"`
	MemoryMB int `json:"memoryMB"`
}

// DefaultSizes is the size table used when Options.Sizes is nil. The sizes
// are small on purpose: this driver usually emulates its CPUs. A stock
// Debian cloud kernel needs at least 72 MB to boot and 96 MB to be
// comfortable.
func DefaultSizes() map[string]Size {
	return map[string]Size{
		"Standard_A1":    {VCPUs: 1, MemoryMB: 128},
		"Standard_A2":    {VCPUs: 2, MemoryMB: 256},
		"Standard_B1s":   {VCPUs: 1, MemoryMB: 128},
		"Standard_B2s":   {VCPUs: 2, MemoryMB: 256},
		"Standard_D1_v2": {VCPUs: 1, MemoryMB: 256},
		"Standard_D2_v2": {VCPUs: 2, MemoryMB: 512},
		"Standard_D4_v2": {VCPUs: 4, MemoryMB: 1024},
	}
}

// DefaultSize is the size of a spec that names none.
const DefaultSize = "Standard_A1"

// Errors about sizes and memory.
var (
	// ErrUnknownSize is returned for a Spec whose Size is not in the size
	// table (and that carries no VCPUs and MemoryMB of its own).
	ErrUnknownSize = fmt.Errorf("qemu: unknown VM size: %w", driver.ErrSizeUnsupported)
	// ErrSizeTooSmall is returned when the size has less memory than the
	// image's minMemoryMB.
	ErrSizeTooSmall = fmt.Errorf("qemu: VM size too small for the image: %w", driver.ErrSizeUnsupported)
	// ErrInsufficientMemory is returned by Create, Start, Restart and
	// Reimage when running the VM would exceed the host's memory
	// allowance. The error is an *InsufficientMemoryError.
	ErrInsufficientMemory = fmt.Errorf("qemu: insufficient host memory: %w", driver.ErrInsufficientCapacity)
)

// InsufficientMemoryError says why a VM was refused. It wraps
// ErrInsufficientMemory.
type InsufficientMemoryError struct {
	ID string
	// RequestedMB is the VM's memory plus the per-VM overhead.
	RequestedMB int
	// UsedMB is what the VMs that run or should run already hold.
	UsedMB int
	// AllowedMB is HostMemoryMB times MemoryOvercommit.
	AllowedMB int
}

func (e *InsufficientMemoryError) Error() string {
	return fmt.Sprintf("qemu: insufficient host memory for %s: requested %d MB, %d MB used by other VMs, %d MB allowed (%d MB free)",
		e.ID, e.RequestedMB, e.UsedMB, e.AllowedMB, max(e.AllowedMB-e.UsedMB, 0))
}

func (e *InsufficientMemoryError) Unwrap() error { return ErrInsufficientMemory }

// resources are what one VM gets.
type resources struct {
	VCPUs    int `json:"vcpus"`
	MemoryMB int `json:"memoryMB"`
}

// resolveSize returns the resources of spec: its own VCPUs and MemoryMB when
// it carries them (the controller resolves sizes through the operator's
// table), else the driver's size table entry for spec.Size.
func resolveSize(sizes map[string]Size, spec driver.Spec, img image) (resources, error) {
	var r resources
	switch {
	case spec.MemoryMB > 0:
		r = resources{VCPUs: max(spec.VCPUs, 1), MemoryMB: spec.MemoryMB}
	default:
		name := spec.Size
		if name == "" {
			name = DefaultSize
		}
		s, ok := sizes[name]
		if !ok {
			// ARM size names are case-insensitive.
			for k, v := range sizes {
				if strings.EqualFold(k, name) {
					s, ok = v, true
					break
				}
			}
		}
		if !ok {
			known := strings.Join(slices.Sorted(maps.Keys(sizes)), ", ")
			return r, fmt.Errorf("%w %q (known: %s)", ErrUnknownSize, name, known)
		}
		r = resources{VCPUs: max(s.VCPUs, 1), MemoryMB: s.MemoryMB}
	}
	if img.MinMemoryMB > 0 && r.MemoryMB < img.MinMemoryMB {
		return r, fmt.Errorf("%w: size %q has %d MB, the image needs at least %d MB",
			ErrSizeTooSmall, spec.Size, r.MemoryMB, img.MinMemoryMB)
	}
	return r, nil
}

// hostMemoryMB reads MemTotal from /proc/meminfo.
func hostMemoryMB() (int, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("qemu: %w", err)
	}
	return parseMemTotal(b)
}

func parseMemTotal(meminfo []byte) (int, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("qemu: meminfo: %w", err)
			}
			return int(kb / 1024), nil
		}
	}
	return 0, errors.New("qemu: meminfo: no MemTotal")
}

// memoryBook is the memory admission of the driver: how much each VM that
// runs or should run holds. Not safe for concurrent use (the Driver guards
// it).
type memoryBook struct {
	allowedMB  int
	overheadMB int
	held       map[string]int // instance ID -> MB (memory + overhead)
}

func (b *memoryBook) used(except string) int {
	n := 0
	for id, mb := range b.held {
		if id != except {
			n += mb
		}
	}
	return n
}

// admit reserves memory for id (replacing what it held), or fails with an
// *InsufficientMemoryError. force reserves even beyond the allowance (a VM
// found running by Recover).
func (b *memoryBook) admit(id string, memoryMB int, force bool) error {
	req := memoryMB + b.overheadMB
	used := b.used(id)
	if !force && used+req > b.allowedMB {
		return &InsufficientMemoryError{ID: id, RequestedMB: req, UsedMB: used, AllowedMB: b.allowedMB}
	}
	b.held[id] = req
	return nil
}

func (b *memoryBook) release(id string) { delete(b.held, id) }
