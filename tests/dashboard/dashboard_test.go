package dashboard

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vmssd/vmssd/internal/testenv"
)

const (
	adminAPI  = "2024-01-01"
	tenantSub = "00000000-0000-0000-0000-0000000000d1"
)

// TestDashboard walks the dashboard as a user would, in a real Chromium:
// sign in, create a scale set with the form (a name the API refuses
// first), scale, change the model,
// upgrade update domain 0 from its row, run a rolling upgrade through an
// approval gate, cancel another, hit a concurrent edit, be refused without
// a CSRF token, and, as a tenant, see neither the operator's set nor the
// operator pages. After each step the heatmap is checked against the ARM
// API and a screenshot is saved.
func TestDashboard(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	ctx := browser(t, e)
	base := e.Server.URL
	path := e.VMSSPath("rg", "web")
	running := func(c domCell) bool { return c.Power == "running" }

	// Sign in with the credentials the server wrote.
	nav(t, ctx, base+"/", "#login")
	run(t, ctx, "sign in",
		chromedp.SetValue(chromedp.ID("client_id"), e.Server.Client.ClientID),
		chromedp.SetValue(chromedp.ID("client_secret"), e.Server.Client.ClientSecret),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("who")),
	)
	if who := text(t, ctx, "#who"); !strings.Contains(who, e.Server.Client.ClientID) || !strings.Contains(who, "operator") {
		t.Fatalf("signed in as %q", who)
	}
	cookieFlags := eval[string](t, ctx, `document.cookie`)
	if strings.Contains(cookieFlags, "vmssd_session") {
		t.Fatalf("the session cookie is readable by scripts (not HttpOnly): %q", cookieFlags)
	}

	// Create the scale set with the form: first in a new resource group
	// typed in, with a name the API refuses (its ARM error is shown and
	// logged, and no set is made), then right, picking that group.
	run(t, ctx, "create form", chromedp.WaitVisible(chromedp.ID("create-form")))
	if n := eval[int](t, ctx, `[...document.querySelectorAll('#new-image option')].filter(o => o.value === 'vmssd:demo:guest:1.0.0').length`); n != 1 {
		t.Fatalf("the image list lacks vmssd:demo:guest:1.0.0")
	}
	// (The page is new after each answer: the fields left empty are.)
	fill := func(pick, newRG, name string) []chromedp.Action[chromedp.Void] {
		field := chromedp.SetValue(chromedp.ID("new-rg"), pick)
		if newRG != "" {
			field = chromedp.SetValue(chromedp.ID("new-rg-name"), newRG)
		}
		return set(
			field,
			chromedp.SetValue(chromedp.ID("new-name"), name),
			chromedp.SetValue(chromedp.ID("new-image"), "vmssd:demo:guest:1.0.0"),
			chromedp.SetValue(chromedp.ID("new-capacity"), "3"),
			chromedp.SetValue(chromedp.ID("new-size"), "Standard_A1"),
			chromedp.SetValue(chromedp.ID("new-mode"), "Manual"),
		)
	}
	if f := submit(t, ctx, "create with a bad name", fill("", "rg", "bad name!"), chromedp.Click(chromedp.ID("create"))); !strings.Contains(f, "create scale set bad name! failed: InvalidParameter") || !strings.Contains(f, "is not valid") {
		t.Fatalf("after Create with an invalid name: %q", f)
	}
	run(t, ctx, "form again", chromedp.WaitVisible(chromedp.ID("create-form")))
	shot(t, ctx, "00-create-refused")
	if r := e.Do(http.MethodGet, e.VMSSPath("rg", url.PathEscape("bad name!")), nil); r.Status < 400 {
		t.Fatalf("the refused set exists: %d", r.Status)
	}
	// The typed group was created; this time pick it from the list.
	if n := eval[int](t, ctx, fmt.Sprintf(`[...document.querySelectorAll('#new-rg option')].filter(o => o.value === %q).length`, e.Sub+"/rg")); n != 1 {
		t.Fatalf("the resource group picker lacks the new group rg")
	}
	if f := submit(t, ctx, "create", fill(e.Sub+"/rg", "", "web"), chromedp.Click(chromedp.ID("create"))); !strings.Contains(f, "create scale set web: accepted") {
		t.Fatalf("after Create: %q", f)
	}
	if href := eval[string](t, ctx, `location.href`); strings.Contains(href, "/ui/set?") {
		run(t, ctx, "the new set's page", chromedp.WaitVisible(chromedp.ID("grid")))
	} else { // submit read the outcome from the activity log (a dropped navigation)
		nav(t, ctx, base+"/ui/set?sub="+e.Sub+"&rg=rg&name=web", "#grid")
	}
	if r := e.Do(http.MethodGet, e.RGPath("rg"), nil); r.Status != http.StatusOK {
		t.Fatalf("the new resource group: %d %s", r.Status, r.Body)
	}
	m := e.Do(http.MethodGet, path, nil).Map()
	if dig(m, "sku", "name") != "Standard_A1" || dig(m, "sku", "capacity") != float64(3) || dig(m, "properties", "upgradePolicy", "mode") != "Manual" ||
		dig(m, "properties", "virtualMachineProfile", "storageProfile", "imageReference", "version") != "1.0.0" {
		t.Fatalf("the set made by the form: %v", m)
	}
	for deadline := time.Now().Add(90 * time.Second); dig(e.Do(http.MethodGet, path, nil).Map(), "properties", "provisioningState") != "Succeeded"; {
		if time.Now().After(deadline) {
			t.Fatalf("the new set is %v", dig(e.Do(http.MethodGet, path, nil).Map(), "properties", "provisioningState"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	checkHeatmap(t, ctx, e, path, "01-created", running)

	// Scale 3 -> 4.
	if f := submit(t, ctx, "scale", set(chromedp.SetValue(chromedp.ID("capacity"), "4")), chromedp.Click(chromedp.ID("scale"))); !strings.Contains(f, "scale to 4: accepted") {
		t.Fatalf("after Scale: %q", f)
	}
	checkHeatmap(t, ctx, e, path, "02-scaled", running)
	if n := len(apiCells(t, e, path)); n != 4 {
		t.Fatalf("%d instances after scaling to 4", n)
	}

	// Change the model (Manual: the instances keep running the old one and
	// are marked not latest).
	if f := submit(t, ctx, "update model", set(chromedp.SetValue(chromedp.ID("version"), "1.1.0")), chromedp.Click(chromedp.ID("update-model"))); !strings.Contains(f, "version=1.1.0): accepted") {
		t.Fatalf("after Update model: %q", f)
	}
	if v := modelVersion(t, e, path); v != "1.1.0" {
		t.Fatalf("model version %q after Update model", v)
	}
	checkHeatmap(t, ctx, e, path, "03-model-changed", func(c domCell) bool { return c.Latest == "false" && running(c) })

	// Upgrade update domain 0 from its row.
	if f := submit(t, ctx, "upgrade UD 0", nil, clickLive(`tr[data-ud="0"] button[data-act="upgrade"]`)); !strings.Contains(f, "upgrade UD 0") || !strings.Contains(f, "accepted") {
		t.Fatalf("after Upgrade UD 0: %q", f)
	}
	checkHeatmap(t, ctx, e, path, "04-ud0-upgraded", func(c domCell) bool {
		if c.UD == "0" {
			return c.Latest == "true" && c.Version == "1.1.0" && running(c)
		}
		return c.Latest == "false" && c.Version == "1.0.0"
	})

	// A rolling upgrade with an approval gate after the first batch: the
	// page shows the gate by itself (server-sent events), Approve passes it.
	if f := submit(t, ctx, "rolling model", set(
		chromedp.SetValue(chromedp.ID("mode"), "Rolling"),
		chromedp.SetValue(chromedp.ID("approval"), "firstBatch"),
		chromedp.SetValue(chromedp.ID("batch"), "50"),
		chromedp.SetValue(chromedp.ID("version"), "1.0.0"),
	), chromedp.Click(chromedp.ID("update-model"))); !strings.Contains(f, "accepted") {
		t.Fatalf("after Update model (Rolling): %q", f)
	}
	waitAttr(t, ctx, "#rollout-panel", "data-awaiting", "true", 60*time.Second)
	run(t, ctx, "gate shown", chromedp.WaitVisible(chromedp.ID("gate")))
	shot(t, ctx, "scaleset-rollout")
	if st := rollingCode(t, e, path); st != "RollingForward" {
		t.Fatalf("rolling upgrade %q at the gate", st)
	}
	if f := submit(t, ctx, "approve", nil, clickLive("#ro-approve")); !strings.Contains(f, "approve: accepted") {
		t.Fatalf("after Approve: %q", f)
	}
	waitAttr(t, ctx, "#rollout-panel", "data-status", "Completed", 90*time.Second)
	checkHeatmap(t, ctx, e, path, "05-rolled", func(c domCell) bool { return c.Latest == "true" && c.Version == "1.0.0" && running(c) })
	shot(t, ctx, "scaleset-heatmap")

	// Another rolling upgrade, cancelled at its gate.
	if f := submit(t, ctx, "second rollout", set(chromedp.SetValue(chromedp.ID("version"), "1.1.0")), chromedp.Click(chromedp.ID("update-model"))); !strings.Contains(f, "accepted") {
		t.Fatalf("after Update model (second rollout): %q", f)
	}
	waitAttr(t, ctx, "#rollout-panel", "data-awaiting", "true", 60*time.Second)
	if f := submit(t, ctx, "cancel", nil, clickLive("#ro-cancel")); !strings.Contains(f, "cancel: accepted") {
		t.Fatalf("after Cancel: %q", f)
	}
	waitAttr(t, ctx, "#rollout-panel", "data-status", "Cancelled", 60*time.Second)
	if st := rollingCode(t, e, path); st != "Cancelled" {
		t.Fatalf("rolling upgrade %q after Cancel", st)
	}
	checkHeatmap(t, ctx, e, path, "06-cancelled", running)

	// A concurrent edit: the page's model is stale when it is submitted.
	nav(t, ctx, base+"/ui/set?sub="+e.Sub+"&rg=rg&name=web", "#grid")
	r := e.Do(http.MethodPatch, path, map[string]any{"properties": map[string]any{"upgradePolicy": map[string]any{
		"rollingUpgradePolicy": map[string]any{"pauseTimeBetweenBatches": "PT1S"}}}})
	if r.Status >= 300 {
		t.Fatalf("concurrent PATCH: %d %s", r.Status, r.Body)
	}
	if f := submit(t, ctx, "stale update", set(chromedp.SetValue(chromedp.ID("batch"), "34")), chromedp.Click(chromedp.ID("update-model"))); !strings.Contains(f, "conflict") || !strings.Contains(f, "PreconditionFailed") {
		t.Fatalf("a stale edit was not refused: %q", f)
	}
	pol := policy(t, e, path)
	if pol["maxBatchInstancePercent"] != float64(50) || pol["pauseTimeBetweenBatches"] != "PT1S" {
		t.Fatalf("after the conflict the policy is %v: the stale edit overwrote the concurrent one", pol)
	}
	if v := eval[string](t, ctx, `document.getElementById('pause').value`); v != "PT1S" {
		t.Fatalf("the page shows pause %q after the conflict, want the current PT1S", v)
	}
	shot(t, ctx, "07-conflict")

	// Per-instance actions: choose a cell, protect it; its boot log.
	nav(t, ctx, base+"/ui/set?sub="+e.Sub+"&rg=rg&name=web", "#cell-1")
	run(t, ctx, "choose cell 1", clickLive("#cell-1"))
	if v := eval[string](t, ctx, `document.getElementById('instance').value`); v != "1" {
		t.Fatalf("choosing cell 1 put %q in the instance field", v)
	}
	if f := submit(t, ctx, "protect", nil, chromedp.Click(chromedp.CSS(`#instance-actions button[value="protect"]`))); !strings.Contains(f, "protect instance 1: accepted") {
		t.Fatalf("after Protect: %q", f)
	}
	waitAttr(t, ctx, "#cell-1", "data-protected", "true", 30*time.Second)
	if m := e.Do(http.MethodGet, path+"/virtualMachines/1", nil).Map(); dig(m, "properties", "protectionPolicy", "protectFromScaleIn") != true {
		t.Fatalf("instance 1 after Protect: %v", dig(m, "properties", "protectionPolicy"))
	}
	submit(t, ctx, "boot log", set(clickLive("#cell-1")), chromedp.Click(chromedp.CSS("#bootlog-form button")))
	if h := text(t, ctx, "h1"); !strings.Contains(h, "Boot log of web instance 1") {
		t.Fatalf("boot log page: %q", h)
	}
	shot(t, ctx, "07b-bootlog")
	nav(t, ctx, base+"/ui/set?sub="+e.Sub+"&rg=rg&name=web", "#grid")

	// CSRF: a POST from the signed-in page without the session's token is
	// refused and changes nothing.
	q := fmt.Sprintf("sub=%s&rg=rg&name=web&capacity=1", e.Sub)
	for _, extra := range []string{"", "&csrf=forged"} {
		st := eval[int](t, ctx, fmt.Sprintf(`fetch('/ui/scale', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: %q, redirect: 'manual'}).then(r => r.status)`, q+extra))
		if st != http.StatusForbidden {
			t.Fatalf("POST /ui/scale without the CSRF token (%q): %d, want 403", extra, st)
		}
	}
	if n := capacity(t, e, path); n != 4 {
		t.Fatalf("capacity %d after refused POSTs", n)
	}

	// The activity log has every action with its outcome.
	nav(t, ctx, base+"/ui/activity", "#activity")
	act := text(t, ctx, "#activity")
	for _, want := range []string{"create resource group rg", "create scale set web", "create scale set bad name!", "InvalidParameter", "scale to 4", "upgrade UD 0", "rolling upgrade: approve", "rolling upgrade: cancel", "PreconditionFailed"} {
		if !strings.Contains(act, want) {
			t.Errorf("activity log lacks %q:\n%s", want, act)
		}
	}
	shot(t, ctx, "activity")
	nav(t, ctx, base+"/ui/admin/images", "#admin-table")
	if s := text(t, ctx, "#admin-table"); !strings.Contains(s, "1.1.0") {
		t.Errorf("the images page lacks the demo image 1.1.0: %s", s)
	}

	nav(t, ctx, base+"/ui/admin/hosts", "#admin-table")
	if s := text(t, ctx, "#admin-table"); !strings.Contains(s, "local") {
		t.Errorf("the hosts page lacks host local: %s", s)
	}
	nav(t, ctx, base+"/ui/admin/quotas", "#admin-table")
	if s := text(t, ctx, "#admin-table"); !strings.Contains(s, e.Sub) {
		t.Errorf("the quotas page lacks the default subscription: %s", s)
	}
	nav(t, ctx, base+"/ui/admin/marketplace", "#items")
	if n := eval[int](t, ctx, `document.querySelectorAll('#items button').length`); n == 0 {
		t.Errorf("the marketplace page lists no local gallery item (the default one is preloaded): %s", text(t, ctx, "#items"))
	}
	shot(t, ctx, "marketplace")

	// A tenant sees neither the operator's set nor the operator pages.
	secret := tenant(t, e, "tenant-d1", tenantSub)
	nav(t, ctx, base+"/", ".logout button")
	if f := submit(t, ctx, "sign out", nil, chromedp.Click(chromedp.CSS(".logout button"))); f != "-" {
		t.Fatalf("after sign-out: %q", f)
	}
	run(t, ctx, "sign in as tenant",
		chromedp.WaitVisible(chromedp.ID("login")),
		chromedp.SetValue(chromedp.ID("client_id"), "tenant-d1"),
		chromedp.SetValue(chromedp.ID("client_secret"), secret),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("who")),
	)
	if n := eval[int](t, ctx, `document.querySelectorAll('a.setlink').length`); n != 0 {
		t.Fatalf("the tenant's picker lists %d sets of another principal", n)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('a[href^="/ui/admin/"]').length`); n != 0 {
		t.Fatalf("the tenant sees %d operator links", n)
	}
	shot(t, ctx, "08-tenant-home")
	for _, p := range []string{"/ui/set?sub=" + e.Sub + "&rg=rg&name=web", "/ui/admin/images", "/ui/admin/quotas", "/ui/admin/hosts", "/ui/admin/marketplace", "/ui/events?sub=" + e.Sub + "&rg=rg&name=web"} {
		st := eval[int](t, ctx, fmt.Sprintf(`fetch(%q).then(r => r.status)`, p))
		if st != http.StatusNotFound {
			t.Errorf("tenant GET %s: %d, want 404", p, st)
		}
	}
	nav(t, ctx, base+"/ui/set?sub="+e.Sub+"&rg=rg&name=web", "h1")
	if n := eval[int](t, ctx, `document.querySelectorAll('#grid').length`); n != 0 {
		t.Fatal("the tenant sees the operator's heatmap")
	}
	// Actions go through the API as the tenant: a forged-scope POST with the
	// tenant's own token is refused by the API, not performed.
	csrf := eval[string](t, ctx, `document.querySelector('input[name=csrf]').value`)
	eval[int](t, ctx, fmt.Sprintf(`fetch('/ui/scale', {method: 'POST', headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: %q}).then(r => r.status)`, q+"&csrf="+csrf))
	if n := capacity(t, e, path); n != 4 {
		t.Fatalf("a tenant scaled the operator's set to %d", n)
	}
	shot(t, ctx, "09-tenant-refused")
}

func modelVersion(t *testing.T, e *testenv.Env, path string) string {
	t.Helper()
	m := e.Do(http.MethodGet, path, nil).Map()
	return dig(m, "properties", "virtualMachineProfile", "storageProfile", "imageReference", "version").(string)
}

func capacity(t *testing.T, e *testenv.Env, path string) int {
	t.Helper()
	m := e.Do(http.MethodGet, path, nil).Map()
	return int(dig(m, "sku", "capacity").(float64))
}

func policy(t *testing.T, e *testenv.Env, path string) map[string]any {
	t.Helper()
	m := e.Do(http.MethodGet, path, nil).Map()
	p, _ := dig(m, "properties", "upgradePolicy", "rollingUpgradePolicy").(map[string]any)
	return p
}

func rollingCode(t *testing.T, e *testenv.Env, path string) string {
	t.Helper()
	m := e.Do(http.MethodGet, path+"/rollingUpgrades/latest", nil).Map()
	s, _ := dig(m, "properties", "runningStatus", "code").(string)
	return s
}

func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

// tenant creates a subscription and a tenant principal for it and returns
// the principal's secret.
func tenant(t *testing.T, e *testenv.Env, id, sub string) string {
	t.Helper()
	r := e.Do(http.MethodPut, "/providers/Microsoft.Subscriptions.Admin/subscriptions/"+sub+"?api-version="+adminAPI, map[string]any{"displayName": id})
	if r.Status != http.StatusCreated {
		t.Fatalf("subscription: %d %s", r.Status, r.Body)
	}
	r = e.Do(http.MethodPut, "/providers/vmssd.Admin/principals/"+id+"?api-version="+adminAPI, map[string]any{"role": "tenant", "subscriptions": []string{sub}})
	if r.Status != http.StatusCreated {
		t.Fatalf("principal: %d %s", r.Status, r.Body)
	}
	s, _ := r.Map()["clientSecret"].(string)
	if s == "" {
		t.Fatalf("no secret in %s", r.Body)
	}
	return s
}

func set(a ...chromedp.Action[chromedp.Void]) []chromedp.Action[chromedp.Void] { return a }

// clickLive clicks an element of a live region (the heatmap, the rollout
// panel) in one step in the page: server-sent events replace those nodes,
// so a query-then-click from outside can find its node gone.
func clickLive(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		for {
			ok, err := chromedp.Evaluate[bool](fmt.Sprintf(`(function(){var e=document.querySelector(%q); if(!e||e.disabled) return false; e.focus(); e.click(); return true})()`, sel))(ctx, tg)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: not present or disabled: %w", sel, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}
