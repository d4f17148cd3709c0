package compat

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/testenv"
)

// publishDemo uploads a demo image artifact and publishes it as a version
// of the demo platform image (operator APIs).
func publishDemo(t *testing.T, e *testenv.Env, version string) {
	t.Helper()
	var buf bytes.Buffer
	if err := artifact.BuildDemo(&buf, artifact.DemoOptions{Version: version, Healthy: true}); err != nil {
		t.Fatal(err)
	}
	const adminAPI = "2015-12-01-preview"
	r := e.Do(http.MethodPost, "/providers/vmssd.Admin/artifacts?api-version="+adminAPI, buf.Bytes())
	uri, _ := r.Map()["uri"].(string)
	if r.Status != http.StatusCreated || uri == "" {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	p := "/subscriptions/" + e.Sub + "/providers/Microsoft.Compute.Admin/locations/local/artifactTypes/platformImage/publishers/" +
		server.DemoPublisher + "/offers/" + server.DemoOffer + "/skus/" + server.DemoSKU + "/versions/" + version + "?api-version=" + adminAPI
	if r := e.Do(http.MethodPut, p, map[string]any{"properties": map[string]any{"osDisk": map[string]any{"osType": "Linux", "uri": uri}}}); r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("publish %s: %d %s", version, r.Status, r.Body)
	}
}

// TestSDKRollingUpgrades drives osRollingUpgrade, rollingUpgrades/cancel,
// rollingUpgrades/latest and osUpgradeHistory with armcompute v8, at its
// default api-version and pinned to 2020-06-01.
func TestSDKRollingUpgrades(t *testing.T) {
	for _, tc := range []struct{ name, pin string }{
		{"armcompute-v8-default", ""},
		{"api-2020-06-01", "2020-06-01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testenv.Start(t, testenv.Options{PageSize: 1})
			cred := staticCred(e.Token)
			rec := &apiRecorder{}
			co := coreOptions(e)
			co.APIVersion = tc.pin
			co.PerCallPolicies = []policy.Policy{rec}
			f, err := armcompute.NewClientFactory(server.DefaultSubscriptionID, cred, &arm.ClientOptions{ClientOptions: co, DisableRPRegistration: true})
			if err != nil {
				t.Fatal(err)
			}
			sets, rolling := f.NewVirtualMachineScaleSetsClient(), f.NewVirtualMachineScaleSetRollingUpgradesClient()
			rgs, err := armresources.NewResourceGroupsClient(server.DefaultSubscriptionID, cred, &arm.ClientOptions{ClientOptions: coreOptions(e), DisableRPRegistration: true})
			if err != nil {
				t.Fatal(err)
			}
			const rg, name = "rg", "web"
			if _, err := rgs.CreateOrUpdate(ctxT(t, 30*time.Second), rg, armresources.ResourceGroup{Location: to.Ptr("local")}, nil); err != nil {
				t.Fatal(err)
			}
			m := scaleSet(2, "latest")
			m.Properties.UpgradePolicy = &armcompute.UpgradePolicy{
				Mode: to.Ptr(armcompute.UpgradeModeRolling),
				RollingUpgradePolicy: &armcompute.RollingUpgradePolicy{
					MaxBatchInstancePercent: to.Ptr[int32](50), PauseTimeBetweenBatches: to.Ptr("PT0S"),
				},
			}
			p, err := sets.BeginCreateOrUpdate(ctxT(t, 30*time.Second), rg, name, m, nil)
			done(t, "create", p, err)

			// Nothing ran yet: latest is a 404, cancel a 409.
			_, err = rolling.GetLatest(ctxT(t, 30*time.Second), rg, name, nil)
			responseError(t, "latest before any upgrade", err, http.StatusNotFound, "NotFound")
			_, err = rolling.BeginCancel(ctxT(t, 30*time.Second), rg, name, nil)
			responseError(t, "cancel with nothing running", err, http.StatusConflict, "OperationNotAllowed")

			publishDemo(t, e, "1.2.0")
			up, err := rolling.BeginStartOSUpgrade(ctxT(t, 30*time.Second), rg, name, nil)
			done(t, "osRollingUpgrade", up, err)
			latest, err := rolling.GetLatest(ctxT(t, 30*time.Second), rg, name, nil)
			if err != nil {
				t.Fatal(err)
			}
			lp := latest.Properties
			if lp == nil || val(lp.RunningStatus.Code) != armcompute.RollingUpgradeStatusCodeCompleted || val(lp.Progress.SuccessfulInstanceCount) != 2 ||
				val(lp.Policy.MaxBatchInstancePercent) != 50 || val(lp.RunningStatus.LastAction) != armcompute.RollingUpgradeActionTypeStart {
				t.Fatalf("latest after the upgrade: %+v", lp)
			}

			// A second upgrade, cancelled while it pauses between batches.
			publishDemo(t, e, "1.3.0")
			pause, err := sets.BeginUpdate(ctxT(t, 30*time.Second), rg, name, armcompute.VirtualMachineScaleSetUpdate{
				Properties: &armcompute.VirtualMachineScaleSetUpdateProperties{UpgradePolicy: &armcompute.UpgradePolicy{
					Mode:                 to.Ptr(armcompute.UpgradeModeRolling),
					RollingUpgradePolicy: &armcompute.RollingUpgradePolicy{MaxBatchInstancePercent: to.Ptr[int32](50), PauseTimeBetweenBatches: to.Ptr("PT1M")},
				}},
			}, nil)
			done(t, "pause policy", pause, err)
			up, err = rolling.BeginStartOSUpgrade(ctxT(t, 30*time.Second), rg, name, nil)
			if err != nil {
				t.Fatal(err)
			}
			testenv.Eventually(t, stateTimeout, "the first batch upgraded", func() bool {
				l, err := rolling.GetLatest(ctxT(t, 30*time.Second), rg, name, nil)
				return err == nil && val(l.Properties.Progress.SuccessfulInstanceCount) == 1
			})
			cp, err := rolling.BeginCancel(ctxT(t, 30*time.Second), rg, name, nil)
			done(t, "cancel", cp, err)
			if _, err := up.PollUntilDone(ctxT(t, opTimeout), pollOpts); err == nil {
				t.Error("the cancelled osRollingUpgrade's poller succeeded")
			}
			latest, err = rolling.GetLatest(ctxT(t, 30*time.Second), rg, name, nil)
			if err != nil || val(latest.Properties.RunningStatus.Code) != armcompute.RollingUpgradeStatusCodeCancelled ||
				val(latest.Properties.RunningStatus.LastAction) != armcompute.RollingUpgradeActionTypeCancel {
				t.Fatalf("latest after cancel: %+v %v", latest.Properties, err)
			}

			// The history, one rollout per page, newest first.
			var hist []*armcompute.UpgradeOperationHistoricalStatusInfo
			pages := 0
			pg := sets.NewGetOSUpgradeHistoryPager(rg, name, nil)
			for pg.More() {
				page, err := pg.NextPage(ctxT(t, 30*time.Second))
				if err != nil {
					t.Fatal(err)
				}
				pages++
				hist = append(hist, page.Value...)
			}
			if len(hist) != 2 || pages != 2 {
				t.Fatalf("history: %d items in %d pages", len(hist), pages)
			}
			h0, h1 := hist[0].Properties, hist[1].Properties
			if val(h0.RunningStatus.Code) != armcompute.UpgradeStateCancelled || val(h1.RunningStatus.Code) != armcompute.UpgradeStateCompleted ||
				val(h1.StartedBy) != armcompute.UpgradeOperationInvokerUser || val(h1.TargetImageReference.ExactVersion) != "1.2.0" ||
				val(h1.Progress.SuccessfulInstanceCount) != 2 || h1.RunningStatus.EndTime == nil {
				t.Errorf("history items: %+v / %+v", h0, h1)
			}

			_, err = rolling.BeginStartExtensionUpgrade(ctxT(t, 30*time.Second), rg, name, nil)
			responseError(t, "extension rolling upgrade", err, http.StatusConflict, "OperationNotSupported")
			if got := rec.seen(); len(got) != 1 || tc.pin != "" && got[0] != tc.pin {
				t.Errorf("api-versions sent: %v", got)
			}
		})
	}
}
