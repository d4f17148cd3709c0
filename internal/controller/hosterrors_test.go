package controller

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/errs"
)

// TestInstanceError maps what a driver reports, wrapped as drivers wrap it,
// to the ARM error an instance shows.
func TestInstanceError(t *testing.T) {
	tests := []struct {
		err  error
		kind errs.Kind
		code string
	}{
		{fmt.Errorf("netattach: %w: private IP 10.0.0.300", driver.ErrNetworkInvalid), errs.Invalid, "InvalidNetworkConfiguration"},
		{fmt.Errorf("process: %w: no entrypoint", driver.ErrImageInvalid), errs.Invalid, "InvalidImage"},
		{fmt.Errorf("qemu: %w", driver.ErrInsufficientCapacity), errs.Conflict, "AllocationFailed"},
		{fmt.Errorf("process: %w", driver.ErrSandboxUnavailable), errs.Conflict, "SandboxNotAvailable"},
		{errors.New("disk full"), errs.Internal, "ProvisioningFailed"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			e := instanceError(tt.err)
			if e.Kind != tt.kind || e.Code != tt.code || !errors.Is(e, tt.err) {
				t.Errorf("instanceError(%v) = %v %q (wraps: %v), want %v %q", tt.err, e.Kind, e.Code, errors.Is(e, tt.err), tt.kind, tt.code)
			}
		})
	}
}
