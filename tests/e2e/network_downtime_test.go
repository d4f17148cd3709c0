package e2e

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/cli"
	"github.com/vmssd/vmssd/internal/testenv"
)

// downtimeRate is the steady request rate through the frontend.
const downtimeRate = 100

// TestZeroDowntimeBehindLoadBalancer measures what the users of a service
// behind the load balancer see while its 10 instances move from image
// 1.0.0 to 1.1.0, with a steady vegeta load (loopback only, a new
// connection per request, bounded in time) through the frontend: a
// Rolling upgrade at 20 % batches and vmssctl's one-domain-at-a-time walk
// fail no request (each instance leaves rotation and drains before its
// host upgrades it, and returns when the load balancer's probe passes);
// Automatic mode upgrades every instance at once and fails requests, as
// the Azure documentation warns.
func TestZeroDowntimeBehindLoadBalancer(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     string
		policy   map[string]any
		upgrade  func(t *testing.T, e *testenv.Env, path string)
		wantDown bool
	}{
		{"rolling 20% batches", "Rolling", map[string]any{"maxBatchInstancePercent": 20, "pauseTimeBetweenBatches": "PT0S"}, func(t *testing.T, e *testenv.Env, path string) {
			setVersion(t, e, path, "1.1.0")
			st := waitRolling(t, e, path, "Completed", 4*time.Minute)
			if p := st.Properties.Progress; p.Successful != 10 || p.Failed != 0 {
				t.Errorf("rollout progress %+v, want 10 successful", p)
			}
		}, false},
		{"domain walk", "Manual", nil, func(t *testing.T, e *testenv.Env, path string) {
			env := map[string]string{"VMSSCTL_CONFIG": e.Server.ConfigFile, "HOME": t.TempDir()}
			var out, errOut bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			rc := cli.Execute(ctx, []string{"vmss", "upgrade", "-g", "rg", "-n", "web", "--new-version", "1.1.0", "--all-domains", "-y", "-o", "json"},
				nil, &out, &errOut, func(k string) string { return env[k] })
			if rc != cli.ExitOK {
				t.Fatalf("walk: exit %d\n%s", rc, errOut.String())
			}
		}, false},
		{"automatic", "Automatic", nil, func(t *testing.T, e *testenv.Env, path string) {
			setVersion(t, e, path, "1.1.0")
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testenv.Start(t, testenv.Options{})
			e.CreateRG("rg")
			s := createLB(t, e, "rg")
			path := e.VMSSPath("rg", "web")
			body := s.setBody(10, "1.0.0", tc.mode)
			if tc.policy != nil {
				body["properties"].(map[string]any)["upgradePolicy"].(map[string]any)["rollingUpgradePolicy"] = tc.policy
			}
			waitOp(t, e, e.Do(http.MethodPut, path, body))
			waitHealthy(t, e, "rg", "web", 10, 2*time.Minute)
			testenv.Eventually(t, 30*time.Second, "every instance answering through the frontend", func() bool {
				return len(answering(t, s.frontend(), 60)) == 10
			})

			before := map[string]string{}
			for _, v := range listVMs(t, e, "rg", "web") {
				before[v.InstanceID] = nicAddress(t, e, path, v.InstanceID)
			}

			l := startLoad(s.frontend(), downtimeRate, 5*time.Minute)
			time.Sleep(time.Second) // steady state first
			start := time.Now()
			tc.upgrade(t, e, path)
			vms := waitHealthy(t, e, "rg", "web", 10, 2*time.Minute)
			for id, v := range versions(t, vms) {
				if v != "1.1.0" {
					t.Errorf("instance %s runs %s after the upgrade", id, v)
				}
			}
			// Upgrades keep each instance's private address.
			for _, v := range vms {
				if a := nicAddress(t, e, path, v.InstanceID); a != before[v.InstanceID] {
					t.Errorf("instance %s: private address %s before the upgrade, %s after", v.InstanceID, before[v.InstanceID], a)
				}
			}
			// Every instance serves again before the load stops.
			testenv.Eventually(t, 30*time.Second, "every instance answering after the upgrade", func() bool {
				return len(answering(t, s.frontend(), 60)) == 10
			})
			upgraded := time.Since(start)
			failed := l.stop(t, "lb "+tc.name)
			t.Logf("%s: upgrade took %s", tc.name, upgraded.Round(time.Millisecond))
			switch {
			case tc.wantDown && failed == 0:
				t.Errorf("%s: no request failed while every instance was upgraded at once", tc.name)
			case !tc.wantDown && failed != 0:
				t.Errorf("%s: %d requests failed", tc.name, failed)
			}
		})
	}
}
