package model

import (
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

func TestParseISODuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"PT0S", 0, true}, {"PT5S", 5 * time.Second, true}, {"PT1M30S", 90 * time.Second, true},
		{"pt2h", 2 * time.Hour, true}, {"P1DT1H", 25 * time.Hour, true}, {"PT0.5S", 500 * time.Millisecond, true},
		{"", 0, false}, {"P", 0, false}, {"PT", 0, false}, {"5S", 0, false}, {"PT5", 0, false},
		{"P5H", 0, false}, {"PTT5S", 0, false}, {"PT-5S", 0, false}, {"PT99999999S", 0, false},
	} {
		got, err := ParseISODuration(tc.in)
		if (err == nil) != tc.ok || tc.ok && got != tc.want {
			t.Errorf("ParseISODuration(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok {
			back, err := ParseISODuration(FormatISODuration(got))
			if err != nil || back != got {
				t.Errorf("round trip of %v: %q -> %v %v", got, FormatISODuration(got), back, err)
			}
		}
	}
}

func TestRolloutKeysSortNewestFirst(t *testing.T) {
	ref := SetRef{Sub: "S", RG: "rg", Name: "Web"}
	if !(RolloutKey(ref, 2) < RolloutKey(ref, 1)) {
		t.Error("rollout 2 does not sort before rollout 1")
	}
	if k, ok := RolloutSetKey(RolloutKey(ref, 7)); !ok || k != ref.String() {
		t.Errorf("RolloutSetKey = %q %v", k, ok)
	}
}

func TestRollingPolicyDefaultsAndTags(t *testing.T) {
	s := &ScaleSet{Model: &armcompute.VirtualMachineScaleSet{Properties: &armcompute.VirtualMachineScaleSetProperties{}}}
	if p := s.RollingPolicy(); p.MaxBatchInstancePercent != 20 || p.MaxUnhealthyInstancePercent != 20 || p.MaxUnhealthyUpgradedInstancePercent != 20 || p.PauseTimeBetweenBatches != 0 {
		t.Errorf("defaults: %+v", p)
	}
	v, tr, each := "PT10S", "true", "EachBatch"
	s.Model.Tags = map[string]*string{"VMSSD.Rolling.DomainAware": &tr, "vmssd.rolling.approval": &each}
	s.Model.Properties.UpgradePolicy = &armcompute.UpgradePolicy{RollingUpgradePolicy: &armcompute.RollingUpgradePolicy{PauseTimeBetweenBatches: &v}}
	if p := s.RollingPolicy(); !p.DomainAware || p.Approval != ApprovalEachBatch || p.PauseTimeBetweenBatches != 10*time.Second {
		t.Errorf("policy: %+v", p)
	}
}

func TestHealthExtension(t *testing.T) {
	typ := "ApplicationHealthLinux"
	s := &ScaleSet{Model: &armcompute.VirtualMachineScaleSet{Properties: &armcompute.VirtualMachineScaleSetProperties{
		VirtualMachineProfile: &armcompute.VirtualMachineScaleSetVMProfile{ExtensionProfile: &armcompute.VirtualMachineScaleSetExtensionProfile{
			Extensions: []*armcompute.VirtualMachineScaleSetExtension{{Properties: &armcompute.VirtualMachineScaleSetExtensionProperties{
				Type: &typ, Settings: map[string]any{"protocol": "HTTP", "port": float64(8080), "requestPath": "/ready", "intervalInSeconds": float64(2), "numberOfProbes": float64(3)},
			}}}}}}}}
	h, ok := s.HealthExtension()
	if !ok || h.Protocol != "http" || h.Port != 8080 || h.RequestPath != "/ready" || h.Interval != 2*time.Second || h.Probes != 3 || h.Grace != 6*time.Second {
		t.Errorf("extension: %+v %v", h, ok)
	}
}
