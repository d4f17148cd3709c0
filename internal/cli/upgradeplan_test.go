package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

func healthy(id int64, ud int) instState {
	return instState{ID: id, UD: ud, Latest: true, Provisioning: "succeeded", Power: "running", Health: "healthy"}
}

func stale(id int64, ud int) instState {
	s := healthy(id, ud)
	s.Latest = false
	return s
}

// Defect (vmssupgrade): get_vm_ids_by_ud sorted the ids as strings, so
// '10' came before '2'. The walk orders instances numerically, and update
// domains in ascending order.
func TestPlanWalkOrdersIDsNumericallyNotLexicographically(t *testing.T) {
	insts := []instState{stale(10, 0), stale(2, 0), stale(107, 0), stale(6, 0), stale(1, 1), stale(11, 1)}
	steps, err := planWalk(insts, walkTarget{kind: targetAllDomains})
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2 || steps[0].UD != 0 || steps[1].UD != 1 {
		t.Fatalf("steps: %+v", steps)
	}
	if want := []int64{2, 6, 10, 107}; !reflect.DeepEqual(steps[0].Pending, want) {
		t.Errorf("UD 0 order %v, want %v", steps[0].Pending, want)
	}
	if got := joinIDs(steps[0].Pending); got != "2, 6, 10, 107" {
		t.Errorf("joinIDs: %q", got)
	}
}

// Defect (vmssupgrade, editor): no filter on latestModelApplied, so
// up-to-date instances were upgraded again; protected instances were not
// considered. The walk skips both.
func TestPlanWalkSkipsUpToDateAndProtected(t *testing.T) {
	prot := stale(3, 1)
	prot.Protected = true
	del := stale(4, 1)
	del.Provisioning = "deleting"
	insts := []instState{healthy(0, 0), stale(5, 0), stale(1, 1), prot, del, healthy(2, 2)}
	tests := []struct {
		name    string
		target  walkTarget
		want    []step
		wantErr string
	}{
		{"all domains", walkTarget{kind: targetAllDomains}, []step{
			{UD: 0, Pending: []int64{5}, Current: []int64{0}},
			{UD: 1, Pending: []int64{1}, Protected: []int64{3}},
			{UD: 2, Current: []int64{2}},
		}, ""},
		{"one domain", walkTarget{kind: targetDomain, ud: 1}, []step{{UD: 1, Pending: []int64{1}, Protected: []int64{3}}}, ""},
		{"empty domain", walkTarget{kind: targetDomain, ud: 4}, nil, "update domain 4 has no instances"},
		{"ids, duplicates once", walkTarget{kind: targetInstances, ids: []int64{5, 0, 5, 3}}, []step{{UD: -1, Pending: []int64{5}, Current: []int64{0}, Protected: []int64{3}}}, ""},
		{"unknown id", walkTarget{kind: targetInstances, ids: []int64{9}}, nil, "instance 9 is not an instance"},
		{"deleting id", walkTarget{kind: targetInstances, ids: []int64{4}}, nil, "instance 4 is not an instance"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := planWalk(insts, tc.target)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestBatches(t *testing.T) {
	tests := []struct {
		ids  []int64
		size int
		want [][]int64
	}{
		{nil, 2, nil},
		{[]int64{1, 2, 3}, 0, [][]int64{{1, 2, 3}}},
		{[]int64{1, 2, 3}, 5, [][]int64{{1, 2, 3}}},
		{[]int64{1, 2, 3}, 2, [][]int64{{1, 2}, {3}}},
		{[]int64{1, 2, 3, 4}, 1, [][]int64{{1}, {2}, {3}, {4}}},
	}
	for _, tc := range tests {
		if got := batches(tc.ids, tc.size); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("batches(%v, %d) = %v, want %v", tc.ids, tc.size, got, tc.want)
		}
	}
}

// Defects (vmssupgrade): it waited on the scale set's aggregate
// provisioning status, so a failed VM looped forever (no failure branch),
// and a poll before the 202 took effect ended the wait at once (the race).
// A batch is judged per instance: done only when every member runs the
// latest model, provisioned and healthy; failed on a failed provisioning or
// an unhealthy probe on the new model.
func TestAssessBatchPerInstanceNotAggregate(t *testing.T) {
	with := func(s instState, f func(*instState)) instState { f(&s); return s }
	tests := []struct {
		name     string
		now      []instState
		done     bool
		failed   []int64
		waiting  []int64
		upgraded int
		healthy  int
	}{
		{"all healthy on the latest model", []instState{healthy(1, 0), healthy(2, 0)}, true, nil, nil, 2, 2},
		// The race: right after the POST nothing changed yet; the old
		// instances are healthy but not on the latest model.
		{"not started yet", []instState{stale(1, 0), stale(2, 0)}, false, nil, []int64{1, 2}, 0, 0},
		{"updating", []instState{with(stale(1, 0), func(s *instState) { s.Provisioning = "updating" }), healthy(2, 0)}, false, nil, []int64{1}, 1, 1},
		{"initializing on the new model", []instState{with(healthy(1, 0), func(s *instState) { s.Health = "initializing" }), healthy(2, 0)}, false, nil, []int64{1}, 2, 1},
		{"unknown health waits", []instState{with(healthy(1, 0), func(s *instState) { s.Health = "unknown" }), healthy(2, 0)}, false, nil, []int64{1}, 2, 1},
		{"unhealthy on the new model fails", []instState{with(healthy(1, 0), func(s *instState) { s.Health = "unhealthy"; s.HealthMsg = "HTTP 500" }), healthy(2, 0)}, false, []int64{1}, nil, 2, 1},
		{"unhealthy on the old model waits", []instState{with(stale(1, 0), func(s *instState) { s.Health = "unhealthy" }), healthy(2, 0)}, false, nil, []int64{1}, 1, 1},
		{"provisioning failed", []instState{with(stale(1, 0), func(s *instState) { s.Provisioning = "failed"; s.ErrMsg = "ImageNotFound: gone" }), healthy(2, 0)}, false, []int64{1}, nil, 1, 1},
		{"stopped on the latest model counts", []instState{with(healthy(1, 0), func(s *instState) { s.Power = "stopped"; s.Health = "unknown" }), healthy(2, 0)}, true, nil, nil, 2, 2},
		{"deleted meanwhile counts", []instState{healthy(2, 0)}, true, nil, nil, 2, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := map[int64]instState{}
			for _, s := range tc.now {
				now[s.ID] = s
			}
			b := assessBatch([]int64{1, 2}, now)
			var failed []int64
			for _, f := range b.Failed {
				failed = append(failed, f.ID)
				if f.Reason == "" {
					t.Errorf("failure of %d without a reason", f.ID)
				}
			}
			if b.Done() != tc.done || !reflect.DeepEqual(failed, tc.failed) || !reflect.DeepEqual(b.Waiting, tc.waiting) ||
				b.Upgraded != tc.upgraded || b.Healthy != tc.healthy || b.Total != 2 {
				t.Errorf("got %+v (done %v)", b, b.Done())
			}
		})
	}
}

func TestOtherDown(t *testing.T) {
	sick := healthy(7, 2)
	sick.Health = "unhealthy"
	off := healthy(8, 2)
	off.Power = "deallocated"
	st := step{UD: 0, Pending: []int64{1}, Current: []int64{2}}
	got := otherDown([]instState{stale(1, 0), with(healthy(2, 0), "initializing"), healthy(3, 1), sick, off}, st)
	if !reflect.DeepEqual(got, []int64{7}) {
		t.Errorf("otherDown = %v, want [7]", got)
	}
}

func with(s instState, health string) instState { s.Health = health; return s }

func TestInstStateOf(t *testing.T) {
	vm := &armcompute.VirtualMachineScaleSetVM{
		InstanceID: ptr("12"),
		Properties: &armcompute.VirtualMachineScaleSetVMProperties{
			LatestModelApplied: ptr(true),
			ProvisioningState:  ptr("Succeeded"),
			ProtectionPolicy:   &armcompute.VirtualMachineScaleSetVMProtectionPolicy{ProtectFromScaleSetActions: ptr(true)},
			StorageProfile:     &armcompute.StorageProfile{ImageReference: &armcompute.ImageReference{Version: ptr("latest"), ExactVersion: ptr("1.1.0")}},
			InstanceView: &armcompute.VirtualMachineScaleSetVMInstanceView{
				PlatformUpdateDomain: ptr[int32](3), PlatformFaultDomain: ptr[int32](1),
				Statuses: []*armcompute.InstanceViewStatus{
					{Code: ptr("ProvisioningState/failed"), Message: ptr("AllocationFailed: no memory")},
					{Code: ptr("PowerState/running")},
				},
				VMHealth: &armcompute.VirtualMachineHealthStatus{Status: &armcompute.InstanceViewStatus{Code: ptr("HealthState/unhealthy"), Message: ptr("HTTP 503")}},
			},
		},
	}
	got, err := instStateOf(vm)
	if err != nil {
		t.Fatal(err)
	}
	want := instState{ID: 12, UD: 3, FD: 1, Latest: true, Provisioning: "failed", Power: "running", Health: "unhealthy",
		HealthMsg: "HTTP 503", ErrMsg: "AllocationFailed: no memory", Protected: true, Image: "1.1.0"}
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if _, err := instStateOf(&armcompute.VirtualMachineScaleSetVM{InstanceID: ptr("a1")}); err == nil {
		t.Error("a non-numeric instance id was accepted")
	}
}

// Defects (vmssupgrade): no SKU change; a custom-image set without
// imageReference raised KeyError; -n silently beat -c. The image change
// is explicit about what it changes and refuses what does not fit.
func TestApplyImageChange(t *testing.T) {
	platform := func() *armcompute.VirtualMachineScaleSetStorageProfile {
		return &armcompute.VirtualMachineScaleSetStorageProfile{ImageReference: &armcompute.ImageReference{
			Publisher: ptr("vmssd"), Offer: ptr("demo"), SKU: ptr("guest"), Version: ptr("1.0.0")}}
	}
	custom := func() *armcompute.VirtualMachineScaleSetStorageProfile {
		return &armcompute.VirtualMachineScaleSetStorageProfile{OSDisk: &armcompute.VirtualMachineScaleSetOSDisk{
			Image: &armcompute.VirtualHardDisk{URI: ptr("artifact:sha256:aa")}}}
	}
	tests := []struct {
		name    string
		sp      *armcompute.VirtualMachineScaleSetStorageProfile
		c       imageChange
		changes int
		image   string
		wantErr string
	}{
		{"version", platform(), imageChange{newVersion: "1.1.0"}, 1, "vmssd:demo:guest:1.1.0", ""},
		{"sku and version", platform(), imageChange{newVersion: "2.0.0", sku: "guest2"}, 2, "vmssd:demo:guest2:2.0.0", ""},
		{"already set", platform(), imageChange{newVersion: "1.0.0"}, 0, "vmssd:demo:guest:1.0.0", ""},
		{"nothing asked", platform(), imageChange{}, 0, "vmssd:demo:guest:1.0.0", ""},
		{"custom uri", custom(), imageChange{customURI: "artifact:sha256:bb"}, 1, "artifact:sha256:bb", ""},
		{"version on a custom set", custom(), imageChange{newVersion: "1.1.0"}, 0, "", "custom image URI"},
		{"uri on a platform set", platform(), imageChange{customURI: "artifact:sha256:bb"}, 0, "", "platform image"},
		{"image id", &armcompute.VirtualMachineScaleSetStorageProfile{ImageReference: &armcompute.ImageReference{ID: ptr("/x/images/y")}},
			imageChange{newVersion: "1"}, 0, "", "image id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := applyImageChange(tc.sp, tc.c)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(ch) != tc.changes || imageOf(tc.sp) != tc.image {
				t.Errorf("changes %v err %v image %s", ch, err, imageOf(tc.sp))
			}
		})
	}
}

// Defect (vmssupgrade, editor): no retry or backoff anywhere; an HTTP error
// was printed as <Response [409]> or not at all. Transient failures are
// retried, everything else is reported.
func TestTransient(t *testing.T) {
	resp := func(code int) error {
		return &azcore.ResponseError{StatusCode: code, RawResponse: &http.Response{StatusCode: code}}
	}
	tests := []struct {
		err  error
		want bool
	}{
		{resp(503), true}, {resp(429), true}, {resp(500), true},
		{resp(404), false}, {resp(409), false}, {resp(400), false}, {resp(412), false},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{errors.New("ClientSecretCredential: dial tcp 127.0.0.1:1: connect: connection refused"), true},
		{usageErrorf("bad"), false},
		{errors.New("instance list: instance id \"x\" is not a number"), false},
	}
	for _, tc := range tests {
		if got := transient(context.Background(), tc.err); got != tc.want {
			t.Errorf("transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if transient(ctx, resp(503)) {
		t.Error("a cancelled context is retried")
	}
}

func TestRetrierGivesUpAfterBudget(t *testing.T) {
	var sb strings.Builder
	r := &retrier{budget: 600 * time.Millisecond, w: &sb}
	calls := 0
	start := time.Now()
	err := r.do(context.Background(), "list the instances", func() error {
		calls++
		return fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	})
	if err == nil || !strings.Contains(err.Error(), "unreachable for 600ms") || calls < 2 || time.Since(start) > 5*time.Second {
		t.Errorf("err %v after %d calls in %s", err, calls, time.Since(start))
	}
	if strings.Count(sb.String(), "retrying") != 1 {
		t.Errorf("retry notes: %q", sb.String())
	}
	// A success after failures says so once.
	sb.Reset()
	calls = 0
	err = r.do(context.Background(), "list", func() error {
		calls++
		if calls < 3 {
			return &azcore.ResponseError{StatusCode: 503}
		}
		return nil
	})
	if err != nil || calls != 3 || !strings.Contains(sb.String(), "answers again") {
		t.Errorf("err %v calls %d out %q", err, calls, sb.String())
	}
}

func TestProgressLineAndBar(t *testing.T) {
	if got := bar(3, 6, 10); got != "[#####.....]" {
		t.Errorf("bar: %q", got)
	}
	if got := bar(0, 0, 4); got != "[....]" {
		t.Errorf("bar empty: %q", got)
	}
	if got := bar(9, 3, 4); got != "[####]" {
		t.Errorf("bar over: %q", got)
	}
	st := step{UD: 2, Pending: []int64{2, 7}}
	line := progressLine(2, 5, st, 0, 2, batchState{Total: 2, Upgraded: 1, Healthy: 1, Waiting: []int64{7}}, 12*time.Second)
	want := "domains [####......] 2/5  update domain 2 batch 1/2 [##########..........] 1/2 upgraded, 1/2 healthy, waiting for 7 (12s)"
	if line != want {
		t.Errorf("progress line:\n%q\nwant\n%q", line, want)
	}
}

func TestParsePause(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		iso     string
		wantErr bool
	}{
		{"PT0S", 0, "PT0S", false},
		{"PT30S", 30 * time.Second, "PT30S", false},
		{"PT1M30S", 90 * time.Second, "PT1M30S", false},
		{"pt2h", 2 * time.Hour, "PT2H", false},
		{"PT0.5S", 500 * time.Millisecond, "PT0.5S", false},
		{"P1D", 24 * time.Hour, "PT24H", false},
		{"90s", 90 * time.Second, "PT1M30S", false},
		{"P", 0, "", true},
		{"PT", 0, "", true},
		{"PT5X", 0, "", true},
		{"-5s", 0, "", true},
		{"soon", 0, "", true},
	}
	for _, tc := range tests {
		d, err := parsePause(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("parsePause(%q): err %v", tc.in, err)
			continue
		}
		if err == nil && (d != tc.want || formatISODuration(d) != tc.iso) {
			t.Errorf("parsePause(%q) = %s (%s), want %s (%s)", tc.in, d, formatISODuration(d), tc.want, tc.iso)
		}
	}
}
