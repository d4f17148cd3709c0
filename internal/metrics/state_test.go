package metrics

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/host"
	"github.com/vmssd/vmssd/internal/model"
)

// TestCount: instances are counted by the power, health and provisioning
// state the API's instance view shows, odd observations fall back to
// "unknown", and the latest-model count follows the set's model version.
func TestCount(t *testing.T) {
	set := &model.ScaleSet{Sub: "s", RG: "rg", Name: "web", ModelVersion: 2}
	obs := map[string]host.Observed{
		"run-ok":  {Status: driver.Status{Power: driver.PowerRunning}, Health: host.HealthHealthy},
		"run-bad": {Status: driver.Status{Power: driver.PowerRunning}, Health: host.HealthUnhealthy},
		"init":    {Status: driver.Status{Power: driver.PowerStarting}, Health: host.HealthInitializing},
		"odd":     {Status: driver.Status{Power: "hibernating"}, Health: "Sleepy"},
	}
	observe := func(inst *model.Instance) (host.Observed, bool) {
		o, ok := obs[inst.VMID]
		return o, ok
	}
	insts := []*model.Instance{
		{VMID: "run-ok", ModelVersion: 2, ProvisioningState: model.StateSucceeded, Placed: true},
		{VMID: "run-bad", ModelVersion: 1, ProvisioningState: model.StateSucceeded, Placed: true},
		{VMID: "init", ModelVersion: 2, ProvisioningState: model.StateCreating, Placed: true},
		{VMID: "odd", ModelVersion: 2, ProvisioningState: "Weird", Placed: true},
		{VMID: "unplaced", ModelVersion: 2, ProvisioningState: model.StateCreating},
		{VMID: "going", ModelVersion: 2, ProvisioningState: model.StateDeleting, Deleting: true, Placed: true},
		{VMID: "dealloc", ModelVersion: 1, ProvisioningState: model.StateSucceeded, Placed: true, Power: model.PowerDeallocated},
		{VMID: "lost", ModelVersion: 2, ProvisioningState: model.StateFailed, Placed: true, Power: model.PowerRunning},
	}
	got := Count(set, insts, observe)
	want := Counts{
		Power:        map[string]int{"running": 2, "starting": 2, "unknown": 2, "stopping": 1, "deallocated": 1},
		Health:       map[string]int{"healthy": 1, "unhealthy": 1, "initializing": 1, "unknown": 5},
		Provisioning: map[string]int{"succeeded": 3, "creating": 2, "deleting": 1, "failed": 1},
		LatestModel:  6,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("counts (-want +got):\n%s", d)
	}
}
