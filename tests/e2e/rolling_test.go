package e2e

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestRollingUpgradeOverFiveDomains: a model change on a Rolling set of 10
// instances over 5 update domains rolls out by itself in batches of 2 (20%),
// walking the domains in order, never with more than 2 instances down, and
// every instance ends on the new version.
func TestRollingUpgradeOverFiveDomains(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "web")
	waitOp(t, e, e.Do(http.MethodPut, path, rollingBody(10, "1.0.0", map[string]any{"maxBatchInstancePercent": 20})))
	waitHealthy(t, e, "rg", "web", 10, 60*time.Second)
	if _, st := latestRolling(t, e, path); st != http.StatusNotFound {
		t.Errorf("rollingUpgrades/latest before any upgrade: %d, want 404", st)
	}

	s := startSampler(t, e, "rg", "web", 2)
	setVersion(t, e, path, "1.1.0")
	st := waitRolling(t, e, path, "Completed", 90*time.Second)
	s.Stop(t)
	if p := st.Properties.Progress; p.Successful != 10 || p.Failed != 0 || p.Pending != 0 || p.InProgress != 0 {
		t.Errorf("progress %+v, want 10 successful", p)
	}
	if st.Properties.Vmssd.Batches != 5 || st.Properties.Vmssd.Kind != "Model" || st.Properties.Vmssd.StartedBy != "User" {
		t.Errorf("rollout detail %+v, want 5 batches of a model change started by the user", st.Properties.Vmssd)
	}
	vms := waitHealthy(t, e, "rg", "web", 10, 30*time.Second)
	for id, v := range versions(t, vms) {
		if v != "1.1.0" {
			t.Errorf("instance %s runs %s after the rollout", id, v)
		}
	}
	for _, v := range vms {
		if !v.Properties.LatestModelApplied {
			t.Errorf("instance %s: latestModelApplied false after the rollout", v.InstanceID)
		}
	}
	if order := s.upgradeOrder(); !slices.IsSorted(order) {
		t.Errorf("update domains in upgrade order %v: not walked in order", order)
	}
}

// badImage publishes vmssd/demo/guest version as an image whose health
// probe fails.
func badImage(t *testing.T, e *testenv.Env, version string) {
	t.Helper()
	publish(t, e, "vmssd", "demo", "guest", version, uploadDemo(t, e, version, false))
}

// countVersions maps image version to the number of instances on it.
func countVersions(vms []vm) map[string]int {
	out := map[string]int{}
	for _, v := range vms {
		out[v.Properties.StorageProfile.ImageReference.ExactVersion]++
	}
	return out
}

// TestRollingUpgradeBadImage: a rollout to an image whose health probe
// fails stops after the first batch with Azure's breach error, in
// rollingUpgrades/latest and in osUpgradeHistory; with
// rollbackFailedInstancesOnPolicyBreach the failed instances go back to
// the previous image and are healthy again.
func TestRollingUpgradeBadImage(t *testing.T) {
	for _, rollback := range []bool{false, true} {
		t.Run(map[bool]string{false: "stop", true: "rollback"}[rollback], func(t *testing.T) {
			e := testenv.Start(t, testenv.Options{HealthGrace: time.Second})
			e.CreateRG("rg")
			badImage(t, e, "2.0.0")
			path := e.VMSSPath("rg", "web")
			waitOp(t, e, e.Do(http.MethodPut, path, rollingBody(10, "1.0.0", map[string]any{
				"maxBatchInstancePercent": 20, "rollbackFailedInstancesOnPolicyBreach": rollback})))
			waitHealthy(t, e, "rg", "web", 10, 60*time.Second)

			s := startSampler(t, e, "rg", "web", 2)
			setVersion(t, e, path, "2.0.0")
			st := waitRolling(t, e, path, "Faulted", 60*time.Second)
			if st.Properties.Error == nil || st.Properties.Error.Code != "MaxUnhealthyUpgradedInstancePercentExceededInRollingUpgrade" {
				t.Errorf("error %+v, want MaxUnhealthyUpgradedInstancePercentExceededInRollingUpgrade", st.Properties.Error)
			}
			if p := st.Properties.Progress; p.Failed != 2 || p.Successful != 0 || st.Properties.Vmssd.Batches != 1 {
				t.Errorf("progress %+v after %d batches, want 2 failed in the first batch", p, st.Properties.Vmssd.Batches)
			}
			if rollback {
				testenv.Eventually(t, 30*time.Second, "failed instances rolled back", func() bool {
					st, _ = latestRolling(t, e, path)
					return len(st.Properties.Vmssd.RolledBack) == 2
				})
				vms := waitHealthy(t, e, "rg", "web", 10, 30*time.Second)
				if c := countVersions(vms); c["1.0.0"] != 10 {
					t.Errorf("versions after the rollback: %v, want all on 1.0.0", c)
				}
			} else {
				time.Sleep(2 * time.Second) // nothing more happens
				if c := countVersions(listVMs(t, e, "rg", "web")); c["2.0.0"] != 2 || c["1.0.0"] != 8 {
					t.Errorf("versions after the breach: %v, want 2 on 2.0.0 and 8 untouched", c)
				}
			}
			s.Stop(t)
			r := e.Do(http.MethodGet, path+"/osUpgradeHistory", nil)
			var h struct {
				Value []struct {
					Properties struct {
						RunningStatus struct{ Code string }  `json:"runningStatus"`
						Error         *struct{ Code string } `json:"error"`
						StartedBy     string                 `json:"startedBy"`
						RollbackInfo  struct {
							Successful int `json:"successfullyRolledbackInstanceCount"`
						} `json:"rollbackInfo"`
					} `json:"properties"`
				} `json:"value"`
			}
			if err := r.JSON(&h); err != nil || len(h.Value) != 1 {
				t.Fatalf("osUpgradeHistory: %d %s", r.Status, r.Body)
			}
			hp := h.Value[0].Properties
			if hp.RunningStatus.Code != "Faulted" || hp.Error == nil || hp.StartedBy != "User" || rollback && hp.RollbackInfo.Successful != 2 {
				t.Errorf("history item %+v", hp)
			}
		})
	}
}

// TestRollingUpgradeCancel: a cancel in the middle stops the rollout
// before its next batch; the cancel's operation succeeds, the rollout
// shows Cancelled with lastAction Cancel, and nothing more is upgraded.
func TestRollingUpgradeCancel(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "web")
	waitOp(t, e, e.Do(http.MethodPut, path, rollingBody(10, "1.0.0", map[string]any{"pauseTimeBetweenBatches": "PT3S"})))
	waitHealthy(t, e, "rg", "web", 10, 60*time.Second)
	s := startSampler(t, e, "rg", "web", 2)
	setVersion(t, e, path, "1.1.0")
	testenv.Eventually(t, 30*time.Second, "the first batch done", func() bool {
		st, _ := latestRolling(t, e, path)
		return st.Properties.Progress.Successful >= 2
	})
	r := e.Do(http.MethodPost, path+"/rollingUpgrades/cancel", nil)
	mustAccepted(t, r)
	waitOp(t, e, r)
	st := waitRolling(t, e, path, "Cancelled", 10*time.Second)
	if st.Properties.RunningStatus.LastAction != "Cancel" {
		t.Errorf("lastAction %q, want Cancel", st.Properties.RunningStatus.LastAction)
	}
	done := st.Properties.Progress.Successful
	time.Sleep(4 * time.Second)
	s.Stop(t)
	c := countVersions(waitHealthy(t, e, "rg", "web", 10, 30*time.Second))
	if c["1.1.0"] != done || done >= 10 {
		t.Errorf("versions after the cancel: %v, want exactly the %d upgraded before it", c, done)
	}
	// A second cancel has nothing to cancel.
	if r := e.Do(http.MethodPost, path+"/rollingUpgrades/cancel", nil); r.Status != http.StatusConflict || r.ErrorCode() != "OperationNotAllowed" {
		t.Errorf("cancel without a rollout: %d %s", r.Status, r.Body)
	}
}

// TestRollingUpgradeApprovalGate: with the canary gate (tag
// vmssd.rolling.approval=firstBatch) the rollout stops after its first
// batch, says so in rollingUpgrades/latest, and goes on after approve.
func TestRollingUpgradeApprovalGate(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "web")
	body := rollingBody(10, "1.0.0", nil)
	body["tags"] = map[string]any{"vmssd.rolling.approval": "firstBatch"}
	waitOp(t, e, e.Do(http.MethodPut, path, body))
	waitHealthy(t, e, "rg", "web", 10, 60*time.Second)
	if r := e.Do(http.MethodPost, path+"/rollingUpgrades/approve", nil); r.Status != http.StatusConflict || r.ErrorCode() != "NoApprovalPending" {
		t.Errorf("approve with nothing waiting: %d %s", r.Status, r.Body)
	}
	s := startSampler(t, e, "rg", "web", 2)
	setVersion(t, e, path, "1.1.0")
	testenv.Eventually(t, 30*time.Second, "the canary batch waiting for approval", func() bool {
		st, _ := latestRolling(t, e, path)
		return st.Properties.Vmssd.AwaitingApproval
	})
	time.Sleep(2 * time.Second)
	st, _ := latestRolling(t, e, path)
	if st.Properties.RunningStatus.Code != "RollingForward" || st.Properties.Progress.Successful != 2 || st.Properties.Vmssd.Phase != "AwaitingApproval" {
		t.Errorf("at the gate: %s %+v phase %q, want RollingForward with 2 done", st.Properties.RunningStatus.Code, st.Properties.Progress, st.Properties.Vmssd.Phase)
	}
	if c := countVersions(listVMs(t, e, "rg", "web")); c["1.1.0"] != 2 {
		t.Errorf("versions at the gate: %v", c)
	}
	if r := e.Do(http.MethodPost, path+"/rollingUpgrades/approve", nil); r.Status != http.StatusOK {
		t.Fatalf("approve: %d %s", r.Status, r.Body)
	}
	st = waitRolling(t, e, path, "Completed", 60*time.Second)
	s.Stop(t)
	if st.Properties.Progress.Successful != 10 {
		t.Errorf("progress %+v", st.Properties.Progress)
	}
}

// TestRollingUpgradePrioritizeUnhealthy: with prioritizeUnhealthyInstances
// the unhealthy instances are in the first batches.
func TestRollingUpgradePrioritizeUnhealthy(t *testing.T) {
	e := testenv.Start(t, testenv.Options{HealthGrace: time.Second})
	e.CreateRG("rg")
	badImage(t, e, "2.0.0")
	path := e.VMSSPath("rg", "web")
	waitOp(t, e, e.Do(http.MethodPut, path, testenv.VMSSBody(10, "1.0.0", "Manual")))
	vms := waitHealthy(t, e, "rg", "web", 10, 60*time.Second)
	// Two instances of the last update domains go bad.
	var sick []string
	for _, v := range vms {
		if ud := v.Properties.InstanceView.PlatformUpdateDomain; ud == 3 && len(sick) == 0 || ud == 4 && len(sick) == 1 {
			sick = append(sick, v.InstanceID)
		}
	}
	setVersion(t, e, path, "2.0.0")
	waitOp(t, e, e.Do(http.MethodPost, path+"/manualupgrade", map[string]any{"instanceIds": sick}))
	testenv.Eventually(t, 30*time.Second, "two unhealthy instances", func() bool {
		n := 0
		for _, v := range listVMs(t, e, "rg", "web") {
			if v.health() == "HealthState/unhealthy" {
				n++
			}
		}
		return n == 2
	})
	s := startSampler(t, e, "rg", "web", 4)
	waitOp(t, e, e.Do(http.MethodPatch, path, map[string]any{"properties": map[string]any{
		"upgradePolicy":         map[string]any{"mode": "Rolling", "rollingUpgradePolicy": map[string]any{"prioritizeUnhealthyInstances": true, "maxUnhealthyInstancePercent": 50}},
		"virtualMachineProfile": map[string]any{"storageProfile": map[string]any{"imageReference": map[string]any{"version": "1.1.0"}}}}}))
	waitRolling(t, e, path, "Completed", 60*time.Second)
	s.Stop(t)
	s.mu.Lock()
	first := map[string]bool{}
	for i, v := range s.upgraded {
		if i < 4 {
			first[v.InstanceID] = true
		}
	}
	s.mu.Unlock()
	for _, id := range sick {
		if !first[id] {
			t.Errorf("unhealthy instance %s not among the first upgraded %v", id, first)
		}
	}
	if c := countVersions(waitHealthy(t, e, "rg", "web", 10, 30*time.Second)); c["1.1.0"] != 10 {
		t.Errorf("versions: %v", c)
	}
}

// TestAutomaticOSUpgrade: with automatic OS image upgrades a newer version
// of the set's `latest` image starts a rollout by itself, started by the
// Platform; a newer version that is bad is rolled back (automatic rollback)
// and not retried.
func TestAutomaticOSUpgrade(t *testing.T) {
	e := testenv.Start(t, testenv.Options{HealthGrace: time.Second})
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "web")
	body := rollingBody(5, "latest", nil)
	body["properties"].(map[string]any)["upgradePolicy"].(map[string]any)["automaticOSUpgradePolicy"] = map[string]any{"enableAutomaticOSUpgrade": true}
	waitOp(t, e, e.Do(http.MethodPut, path, body))
	waitHealthy(t, e, "rg", "web", 5, 60*time.Second)

	s := startSampler(t, e, "rg", "web", 1)
	publish(t, e, "vmssd", "demo", "guest", "1.2.0", uploadDemo(t, e, "1.2.0", true))
	st := waitRolling(t, e, path, "Completed", 60*time.Second)
	if st.Properties.Vmssd.StartedBy != "Platform" || st.Properties.Vmssd.Kind != "AutomaticOS" || st.Properties.Progress.Successful != 5 {
		t.Errorf("automatic upgrade: %+v %+v", st.Properties.Vmssd, st.Properties.Progress)
	}
	if c := countVersions(waitHealthy(t, e, "rg", "web", 5, 30*time.Second)); c["1.2.0"] != 5 {
		t.Errorf("versions: %v", c)
	}

	badImage(t, e, "1.3.0")
	testenv.Eventually(t, 60*time.Second, "the bad version rolled back", func() bool {
		st, _ = latestRolling(t, e, path)
		return st.Properties.RunningStatus.Code == "Faulted" && len(st.Properties.Vmssd.RolledBack) == 1
	})
	if c := countVersions(waitHealthy(t, e, "rg", "web", 5, 30*time.Second)); c["1.2.0"] != 5 {
		t.Errorf("versions after the rollback: %v", c)
	}
	s.Stop(t)
	time.Sleep(2 * time.Second)
	r := e.Do(http.MethodGet, path+"/osUpgradeHistory", nil)
	var h struct {
		Value []struct {
			Properties struct {
				StartedBy            string `json:"startedBy"`
				TargetImageReference struct {
					ExactVersion string `json:"exactVersion"`
				} `json:"targetImageReference"`
			} `json:"properties"`
		} `json:"value"`
	}
	if err := r.JSON(&h); err != nil || len(h.Value) != 2 {
		t.Fatalf("history after one good and one bad version (no retry): %d %s", r.Status, r.Body)
	}
	if p := h.Value[0].Properties; p.StartedBy != "Platform" || p.TargetImageReference.ExactVersion != "1.3.0" {
		t.Errorf("newest history item %+v", p)
	}
}

// TestOSRollingUpgrade: POST osRollingUpgrade moves a `latest` set to the
// newest version, its operation ending with the rollout; misuse answers
// Azure's errors.
func TestOSRollingUpgrade(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "web")
	waitOp(t, e, e.Do(http.MethodPut, path, testenv.VMSSBody(4, "latest", "Manual")))
	waitHealthy(t, e, "rg", "web", 4, 60*time.Second)
	publish(t, e, "vmssd", "demo", "guest", "1.2.0", uploadDemo(t, e, "1.2.0", true))

	s := startSampler(t, e, "rg", "web", 1)
	r := e.Do(http.MethodPost, path+"/osRollingUpgrade", nil)
	mustAccepted(t, r)
	waitOp(t, e, r)
	s.Stop(t)
	if c := countVersions(waitHealthy(t, e, "rg", "web", 4, 30*time.Second)); c["1.2.0"] != 4 {
		t.Errorf("versions: %v", c)
	}
	st, _ := latestRolling(t, e, path)
	if st.Properties.RunningStatus.Code != "Completed" || st.Properties.Vmssd.Kind != "OS" {
		t.Errorf("latest: %+v", st.Properties)
	}
	// Nothing left to do: a second one completes at once.
	r = e.Do(http.MethodPost, path+"/osRollingUpgrade", nil)
	mustAccepted(t, r)
	waitOp(t, e, r)

	// Misuse.
	waitOp(t, e, e.Do(http.MethodPut, e.VMSSPath("rg", "pinned"), testenv.VMSSBody(1, "1.0.0", "Manual")))
	for _, tc := range []struct {
		path, code string
		status     int
	}{
		{e.VMSSPath("rg", "pinned") + "/osRollingUpgrade", "OperationNotAllowed", http.StatusConflict},
		{path + "/extensionRollingUpgrade", "OperationNotSupported", http.StatusConflict},
		{e.VMSSPath("rg", "pinned") + "/rollingUpgrades/cancel", "OperationNotAllowed", http.StatusConflict},
	} {
		if r := e.Do(http.MethodPost, tc.path, nil); r.Status != tc.status || r.ErrorCode() != tc.code {
			t.Errorf("POST %s: %d %s, want %d %s", tc.path, r.Status, r.Body, tc.status, tc.code)
		}
	}
	if _, st := latestRolling(t, e, e.VMSSPath("rg", "pinned")); st != http.StatusNotFound {
		t.Errorf("latest without a rollout: %d", st)
	}
}

// TestRollingPolicyValidation: values out of Azure's ranges are refused
// with ARM errors naming the field.
func TestRollingPolicyValidation(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	for _, tc := range []struct {
		name   string
		policy map[string]any
		tags   map[string]any
		target string
	}{
		{"batch", map[string]any{"maxBatchInstancePercent": 101}, nil, "properties.upgradePolicy.rollingUpgradePolicy.maxBatchInstancePercent"},
		{"unhealthy", map[string]any{"maxUnhealthyInstancePercent": 2}, nil, "properties.upgradePolicy.rollingUpgradePolicy.maxUnhealthyInstancePercent"},
		{"upgraded", map[string]any{"maxUnhealthyUpgradedInstancePercent": -1}, nil, "properties.upgradePolicy.rollingUpgradePolicy.maxUnhealthyUpgradedInstancePercent"},
		{"pause", map[string]any{"pauseTimeBetweenBatches": "5 seconds"}, nil, "properties.upgradePolicy.rollingUpgradePolicy.pauseTimeBetweenBatches"},
		{"pause-range", map[string]any{"pauseTimeBetweenBatches": "PT3H"}, nil, "properties.upgradePolicy.rollingUpgradePolicy.pauseTimeBetweenBatches"},
		{"approval", nil, map[string]any{"vmssd.rolling.approval": "always"}, "tags.vmssd.rolling.approval"},
	} {
		body := rollingBody(1, "1.0.0", tc.policy)
		if tc.tags != nil {
			body["tags"] = tc.tags
		}
		r := e.Do(http.MethodPut, e.VMSSPath("rg", "v"), body)
		var eb struct {
			Error struct{ Code, Target string } `json:"error"`
		}
		_ = r.JSON(&eb)
		if r.Status != http.StatusBadRequest || eb.Error.Code != "InvalidParameter" || eb.Error.Target != tc.target {
			t.Errorf("%s: %d %s, want 400 InvalidParameter on %s", tc.name, r.Status, r.Body, tc.target)
		}
	}
}

// TestRollingUpgradeMaxSurge: with maxSurge each batch's replacements are
// created on the new model first and the old instances deleted once the
// new ones are healthy: the set never has fewer healthy instances than its
// capacity, and never more than capacity + a batch.
func TestRollingUpgradeMaxSurge(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "web")
	waitOp(t, e, e.Do(http.MethodPut, path, rollingBody(10, "1.0.0", map[string]any{"maxBatchInstancePercent": 20, "maxSurge": true})))
	before := waitHealthy(t, e, "rg", "web", 10, 60*time.Second)
	s := startSampler(t, e, "rg", "web", 2)
	setVersion(t, e, path, "1.1.0")
	st := waitRolling(t, e, path, "Completed", 60*time.Second)
	s.Stop(t)
	if st.Properties.Progress.Successful != 10 || st.Properties.Vmssd.Batches != 5 {
		t.Errorf("progress %+v in %d batches", st.Properties.Progress, st.Properties.Vmssd.Batches)
	}
	after := waitHealthy(t, e, "rg", "web", 10, 30*time.Second)
	if c := countVersions(after); c["1.1.0"] != 10 {
		t.Errorf("versions: %v", c)
	}
	old := map[string]bool{}
	for _, v := range before {
		old[v.InstanceID] = true
	}
	for _, v := range after {
		if old[v.InstanceID] {
			t.Errorf("instance %s was upgraded in place, not replaced", v.InstanceID)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.minHealthy < 10 || s.maxTotal > 12 {
		t.Errorf("during the surge: at least %d healthy, at most %d instances; want >= 10 and <= 12", s.minHealthy, s.maxTotal)
	}
}

// withHealthExtension adds an Application Health extension to a body.
func withHealthExtension(body map[string]any, settings map[string]any) map[string]any {
	vp := body["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)
	vp["extensionProfile"] = map[string]any{"extensions": []any{map[string]any{
		"name": "health",
		"properties": map[string]any{
			"publisher": "Microsoft.ManagedServices", "type": "ApplicationHealthLinux", "typeHandlerVersion": "1.0",
			"settings": settings,
		},
	}}}
	return body
}

// TestApplicationHealthExtensionProbe: with an Application Health extension
// in the model, the host probes what the extension says: a tcp probe finds
// an image whose HTTP health answer is 503 healthy, an http probe of a path
// the guest does not serve finds a good image unhealthy. Bad settings are
// refused.
func TestApplicationHealthExtensionProbe(t *testing.T) {
	e := testenv.Start(t, testenv.Options{HealthGrace: time.Second})
	e.CreateRG("rg")
	badImage(t, e, "2.0.0")
	tcp := withHealthExtension(testenv.VMSSBody(2, "2.0.0", "Manual"), map[string]any{"protocol": "tcp", "port": 80, "intervalInSeconds": 5, "numberOfProbes": 1})
	waitOp(t, e, e.Do(http.MethodPut, e.VMSSPath("rg", "tcp"), tcp))
	waitHealthy(t, e, "rg", "tcp", 2, 30*time.Second)

	missing := withHealthExtension(testenv.VMSSBody(2, "1.0.0", "Manual"), map[string]any{"protocol": "http", "port": 80, "requestPath": "/missing", "gracePeriod": 1})
	waitOp(t, e, e.Do(http.MethodPut, e.VMSSPath("rg", "http"), missing))
	testenv.Eventually(t, 30*time.Second, "instances unhealthy on the extension's path", func() bool {
		vms := listVMs(t, e, "rg", "http")
		n := 0
		for _, v := range vms {
			if v.health() == "HealthState/unhealthy" {
				n++
			}
		}
		return len(vms) == 2 && n == 2
	})
	// The same set probed on /health is healthy again.
	fixed := withHealthExtension(map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{}}},
		map[string]any{"protocol": "http", "port": 80, "requestPath": "/health", "gracePeriod": 1})
	waitOp(t, e, e.Do(http.MethodPatch, e.VMSSPath("rg", "http"), fixed))
	waitHealthy(t, e, "rg", "http", 2, 30*time.Second)

	for _, bad := range []map[string]any{
		{"protocol": "udp", "port": 80},
		{"protocol": "tcp"},
		{"protocol": "http", "port": 80, "intervalInSeconds": 1},
		{"protocol": "http", "port": 80, "numberOfProbes": 30},
		{"protocol": "http", "port": 80, "requestPath": "health"},
	} {
		r := e.Do(http.MethodPut, e.VMSSPath("rg", "bad"), withHealthExtension(testenv.VMSSBody(1, "1.0.0", "Manual"), bad))
		if r.Status != http.StatusBadRequest || r.ErrorCode() != "InvalidParameter" {
			t.Errorf("settings %v: %d %s, want 400 InvalidParameter", bad, r.Status, r.Body)
		}
	}
}

// TestRollingUpgradeDomainAware: with vmssd.rolling.domainAware the batch
// cap applies inside one update domain (50 % of a domain of 2 is 1) and
// each gate waits for the whole previous domain; approval gates after each
// batch are passed with Azure's approveRollingUpgrade.
func TestRollingUpgradeDomainAware(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "web")
	body := rollingBody(10, "1.0.0", map[string]any{"maxBatchInstancePercent": 50})
	body["tags"] = map[string]any{"vmssd.rolling.domainAware": "true", "vmssd.rolling.approval": "eachBatch"}
	waitOp(t, e, e.Do(http.MethodPut, path, body))
	waitHealthy(t, e, "rg", "web", 10, 60*time.Second)
	s := startSampler(t, e, "rg", "web", 1)
	setVersion(t, e, path, "1.1.0")
	for i := 0; ; i++ {
		var st rollingStatus
		testenv.Eventually(t, 30*time.Second, "a gate or the end", func() bool {
			st, _ = latestRolling(t, e, path)
			return st.Properties.Vmssd.AwaitingApproval || st.Properties.RunningStatus.Code == "Completed"
		})
		if st.Properties.RunningStatus.Code == "Completed" {
			if i != 9 || st.Properties.Vmssd.Batches != 10 {
				t.Errorf("completed after %d approvals and %d batches, want 9 and 10", i, st.Properties.Vmssd.Batches)
			}
			break
		}
		if st.Properties.Progress.Successful != i+1 {
			t.Fatalf("gate %d: %d upgraded", i, st.Properties.Progress.Successful)
		}
		r := e.Do(http.MethodPost, path+"/approveRollingUpgrade", nil)
		mustAccepted(t, r)
		waitOp(t, e, r)
	}
	time.Sleep(300 * time.Millisecond) // the sampler sees the last batch
	s.Stop(t)
	if order := s.upgradeOrder(); !slices.IsSorted(order) || len(order) != 10 {
		t.Errorf("update domains in upgrade order %v", order)
	}
}
