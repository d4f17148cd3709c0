package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// rollingBody is a Rolling scale set body with the given policy.
func rollingBody(capacity int, version string, policy map[string]any) map[string]any {
	b := testenv.VMSSBody(capacity, version, "Rolling")
	up := b["properties"].(map[string]any)["upgradePolicy"].(map[string]any)
	if policy != nil {
		up["rollingUpgradePolicy"] = policy
	}
	return b
}

// setVersion changes the model's image version.
func setVersion(t testing.TB, e *testenv.Env, path, version string) {
	t.Helper()
	waitOp(t, e, e.Do(http.MethodPatch, path, map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
		"storageProfile": map[string]any{"imageReference": map[string]any{"version": version}}}}}))
}

// rollingStatus is rollingUpgrades/latest.
type rollingStatus struct {
	Properties struct {
		Policy        map[string]any `json:"policy"`
		RunningStatus struct {
			Code       string `json:"code"`
			LastAction string `json:"lastAction"`
		} `json:"runningStatus"`
		Progress struct {
			Successful int `json:"successfulInstanceCount"`
			Failed     int `json:"failedInstanceCount"`
			InProgress int `json:"inProgressInstanceCount"`
			Pending    int `json:"pendingInstanceCount"`
		} `json:"progress"`
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Vmssd struct {
			Phase            string  `json:"phase"`
			Kind             string  `json:"kind"`
			StartedBy        string  `json:"startedBy"`
			Batches          int     `json:"batches"`
			CurrentBatch     []int64 `json:"currentBatch"`
			AwaitingApproval bool    `json:"awaitingApproval"`
			FailedInstances  []int64 `json:"failedInstances"`
			RolledBack       []int64 `json:"rolledBackInstances"`
		} `json:"vmssd"`
	} `json:"properties"`
}

func latestRolling(t testing.TB, e *testenv.Env, path string) (rollingStatus, int) {
	t.Helper()
	r := e.Do(http.MethodGet, path+"/rollingUpgrades/latest", nil)
	var st rollingStatus
	if r.Status == http.StatusOK {
		if err := r.JSON(&st); err != nil {
			t.Fatalf("rollingUpgrades/latest: %v %s", err, r.Body)
		}
	}
	return st, r.Status
}

// waitRolling waits until the latest rolling upgrade has the given code.
func waitRolling(t testing.TB, e *testenv.Env, path, code string, timeout time.Duration) rollingStatus {
	t.Helper()
	var st rollingStatus
	defer func() {
		if t.Failed() {
			r := e.Do(http.MethodGet, path+"/rollingUpgrades/latest", nil)
			t.Logf("rollingUpgrades/latest: %d %s", r.Status, r.Body)
		}
	}()
	testenv.Eventually(t, timeout, "rolling upgrade "+code, func() bool {
		var status int
		st, status = latestRolling(t, e, path)
		return status == http.StatusOK && st.Properties.RunningStatus.Code == code
	})
	return st
}

// sampler reads the instance views throughout a rollout and records the
// most instances unavailable (not running and healthy) at once, and the
// order in which instances reached each image version.
type sampler struct {
	e       *testenv.Env
	path    string
	allowed int
	stop    chan struct{}
	done    chan struct{}

	mu         sync.Mutex
	minHealthy int
	maxTotal   int
	worst      int
	worstAt    string
	samples    int
	errs       []string
	upgraded   []vm // in the order they were first seen on a new version
	seen       map[string]string
}

func startSampler(t testing.TB, e *testenv.Env, rg, name string, allowed int) *sampler {
	t.Helper()
	s := &sampler{e: e, path: e.VMSSPath(rg, name), allowed: allowed, stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]string{}, minHealthy: -1}
	// The first sample sets the baseline versions.
	s.sample(true)
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			s.sample(false)
		}
	}()
	t.Cleanup(func() { s.Stop(t) })
	return s
}

func (s *sampler) sample(first bool) {
	url := s.path + "/virtualMachines?$expand=instanceView"
	var vms []vm
	for url != "" {
		r := s.e.Do(http.MethodGet, url, nil)
		if r.Status != http.StatusOK {
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Sprintf("list: %d", r.Status))
			s.mu.Unlock()
			return
		}
		var page struct {
			Value    []vm   `json:"value"`
			NextLink string `json:"nextLink"`
		}
		if err := json.Unmarshal(r.Body, &page); err != nil {
			return
		}
		vms = append(vms, page.Value...)
		url = page.NextLink
	}
	down := 0
	var who []string
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vms {
		if v.power() != "PowerState/running" || v.health() != "HealthState/healthy" {
			down++
			who = append(who, v.InstanceID+":"+v.health())
		}
		ver := v.Properties.StorageProfile.ImageReference.ExactVersion
		if old, ok := s.seen[v.InstanceID]; !first && ok && old != ver {
			s.upgraded = append(s.upgraded, v)
		}
		s.seen[v.InstanceID] = ver
	}
	s.samples++
	if healthy := len(vms) - down; s.minHealthy < 0 || healthy < s.minHealthy {
		s.minHealthy = healthy
	}
	s.maxTotal = max(s.maxTotal, len(vms))
	if down > s.worst {
		s.worst, s.worstAt = down, fmt.Sprint(who)
	}
}

// Stop ends sampling and fails the test if more instances than allowed
// were ever unavailable at once.
func (s *sampler) Stop(t testing.TB) {
	t.Helper()
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Logf("sampler: %d samples, at most %d unavailable (allowed %d)", s.samples, s.worst, s.allowed)
	if s.worst > s.allowed {
		t.Errorf("%d instances unavailable at once (%s), the policy allows %d", s.worst, s.worstAt, s.allowed)
	}
}

// upgradeOrder returns the update domains of upgraded instances in the
// order the sampler saw them change version.
func (s *sampler) upgradeOrder() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []int
	for _, v := range s.upgraded {
		out = append(out, v.Properties.InstanceView.PlatformUpdateDomain)
	}
	return out
}
