package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/testenv"
)

// These tests drive `vmss upgrade` (the domain walk) against a real server
// with real instance processes. Each names the vmssupgrade defect
// (shared/design/seed-tools.md §3.1, §4) it proves fixed.

// runIn runs vmssctl with stdin and stderr of the caller's choice.
func (c *ctl) runIn(stdin io.Reader, stderr io.Writer, args ...string) (string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	code := Execute(ctx, args, stdin, &out, stderr, func(k string) string { return c.env[k] })
	return out.String(), code
}

// newUpgradeCtl is a vmssctl with a raw token: these tests run many
// invocations while they poll, which would hit the token endpoint's rate
// limit (tests/e2e/upgradewalk_test.go signs in with the client secret).
func newUpgradeCtl(t *testing.T, e *testenv.Env) *ctl {
	c := newCtl(t, e)
	c.env["VMSSCTL_TOKEN"] = e.Token
	return c
}

// addDemoImage publishes a demo guest image version (healthy or not).
func addDemoImage(t *testing.T, c *ctl, sku, version string, healthy bool) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "guest-"+version+".tar.gz")
	var art bytes.Buffer
	if err := artifact.BuildDemo(&art, artifact.DemoOptions{Version: version, Healthy: healthy}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, art.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok("image", "add", "--publisher", "vmssd", "--offer", "demo", "--sku", sku, "--version", version, "--file", file, "-o", "none")
}

// createWalkSet creates a Manual scale set on vmssd:demo:guest:version and
// waits until every instance is healthy.
func createWalkSet(t *testing.T, c *ctl, name string, n int, version string) {
	t.Helper()
	c.ok("vmss", "create", "-g", "rg1", "-n", name, "--image", "vmssd:demo:guest:"+version, "--instance-count", strconv.Itoa(n),
		"--upgrade-policy-mode", "Manual", "-o", "none")
	testenv.Eventually(t, 90*time.Second, name+" healthy", func() bool {
		insts := walkStates(t, c, name)
		for _, in := range insts {
			if in.down() {
				return false
			}
		}
		return len(insts) == n
	})
}

// walkStates reads the instances as the walk sees them.
func walkStates(t *testing.T, c *ctl, name string) []instState {
	t.Helper()
	var out []instState
	for _, vm := range c.instances("rg1", name) {
		s, err := instStateOf(vm)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func modelVersion(t *testing.T, c *ctl, name string) string {
	t.Helper()
	var set armcompute.VirtualMachineScaleSet
	c.json(&set, "vmss", "show", "-g", "rg1", "-n", name)
	return imageOf(set.Properties.VirtualMachineProfile.StorageProfile)
}

// udSampler reads instance views every 100ms and records the largest number
// of update domains with an instance down at the same time, and the order in
// which domains got upgraded instances.
type udSampler struct {
	mu       sync.Mutex
	maxDown  int
	downSets [][]int
	order    []int
	stop     chan struct{}
	done     chan struct{}
}

func startUDSampler(t *testing.T, e *testenv.Env, name string) *udSampler {
	s := &udSampler{stop: make(chan struct{}), done: make(chan struct{})}
	path := e.VMSSPath("rg1", name) + "/virtualMachines?$expand=instanceView"
	go func() {
		defer close(s.done)
		seen := map[int]bool{}
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			r := e.Do(http.MethodGet, path, nil)
			if r.Status != http.StatusOK {
				continue
			}
			var page struct {
				Value []*armcompute.VirtualMachineScaleSetVM `json:"value"`
			}
			if json.Unmarshal(r.Body, &page) != nil {
				continue
			}
			down := map[int]bool{}
			for _, vm := range page.Value {
				in, err := instStateOf(vm)
				if err != nil {
					continue
				}
				if in.down() {
					down[in.UD] = true
				}
				if in.Latest && !seen[in.UD] {
					seen[in.UD] = true
					s.mu.Lock()
					s.order = append(s.order, in.UD)
					s.mu.Unlock()
				}
			}
			s.mu.Lock()
			if len(down) > s.maxDown {
				s.maxDown = len(down)
			}
			if len(down) > 1 {
				var uds []int
				for ud := range down {
					uds = append(uds, ud)
				}
				s.downSets = append(s.downSets, uds)
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.finish)
	return s
}

func (s *udSampler) finish() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// TestUpgradeWalk covers the walk end to end: one update domain, then all
// domains in order with never more than one domain down, then a no-op
// re-run, a SKU change on one instance, and --no-wait.
func TestUpgradeWalk(t *testing.T) {
	e := testenv.Start(t, testenv.Options{HealthGrace: 10 * time.Second})
	c := newUpgradeCtl(t, e)
	c.ok("group", "create", "-n", "rg1", "-o", "none")
	createWalkSet(t, c, "web", 11, "1.0.0")

	// Defect: vmssupgrade prompted on stdin whatever it was and exited 1 on
	// anything but y. Without a terminal and without -y: a clear refusal,
	// nothing changed.
	out, errOut, code := c.run("vmss", "upgrade", "-g", "rg1", "-n", "web", "--new-version", "1.1.0", "--update-domain", "0")
	if code != ExitUsage || out != "" || !strings.Contains(errOut, "standard input is not a terminal: pass -y/--yes") {
		t.Errorf("no tty, no -y: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "image now:   vmssd:demo:guest:1.0.0") || !strings.Contains(errOut, "imageReference.version: 1.0.0 -> 1.1.0") {
		t.Errorf("the plan does not show the current image and the change:\n%s", errOut)
	}
	if v := modelVersion(t, c, "web"); v != "vmssd:demo:guest:1.0.0" {
		t.Fatalf("refused upgrade changed the model: %s", v)
	}

	// Defect: a version that does not exist was PUT into the model, and
	// every upgrade then failed. It is refused before anything changes.
	_, errOut, code = c.run("vmss", "upgrade", "-g", "rg1", "-n", "web", "--new-version", "9.9.9", "--all-domains", "-y")
	if code != ExitNotFound || !strings.Contains(errOut, "vmssd:demo:guest:9.9.9 does not exist; nothing was changed") {
		t.Errorf("missing version: exit %d, %q", code, errOut)
	}
	if v := modelVersion(t, c, "web"); v != "vmssd:demo:guest:1.0.0" {
		t.Fatalf("a missing version changed the model: %s", v)
	}

	// One update domain. Defect (the race): vmssupgrade could return on its
	// first poll, before the upgrade started. When the walk returns, every
	// instance of the domain runs the new version and is healthy: checked
	// right away, not eventually.
	out, errOut, code = c.run("vmss", "upgrade", "-g", "rg1", "-n", "web", "--new-version", "1.1.0", "--update-domain", "0", "-y", "-o", "json")
	if code != ExitOK {
		t.Fatalf("upgrade UD 0: exit %d\n%s", code, errOut)
	}
	var sum upgradeSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary: %v: %q", err, out)
	}
	// Defect: ids were sorted as strings ('10' before '5').
	if sum.Status != "Succeeded" || !sum.ModelChanged || len(sum.Steps) != 1 || !slices.Equal(sum.Steps[0].Upgraded, []string{"0", "5", "10"}) {
		t.Errorf("UD 0 summary: %+v", sum)
	}
	if !strings.Contains(errOut, "update domain 0: upgrade 0, 5, 10") || !strings.Contains(errOut, "Model updated: imageReference.version: 1.0.0 -> 1.1.0") {
		t.Errorf("UD 0 stderr:\n%s", errOut)
	}
	if strings.Contains(errOut, "\r") || !strings.Contains(errOut, "update domain 0 batch 1/1 [") {
		t.Errorf("plain progress lines expected on a non-terminal stderr:\n%s", errOut)
	}
	for _, in := range walkStates(t, c, "web") {
		onNew := in.Latest && in.Image == "1.1.0" && !in.down()
		if (in.UD == 0) != onNew {
			t.Errorf("after UD 0: instance %d (UD %d) latest=%v image %s health %s", in.ID, in.UD, in.Latest, in.Image, in.Health)
		}
	}

	// Defect: one UD per run, the operator judging health in between. The
	// walk does all domains in order, each healthy before the next; the
	// sampler proves no two domains were ever down together.
	s := startUDSampler(t, e, "web")
	out, errOut, code = c.run("vmss", "upgrade", "-g", "rg1", "-n", "web", "--all-domains", "-y", "-o", "json")
	s.finish()
	if code != ExitOK {
		t.Fatalf("all domains: exit %d\n%s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatal(err)
	}
	var uds []int
	for _, st := range sum.Steps {
		uds = append(uds, *st.UpdateDomain)
		if st.Status != "Succeeded" {
			t.Errorf("step %+v", st)
		}
	}
	if !slices.Equal(uds, []int{0, 1, 2, 3, 4}) || len(sum.Steps[0].Upgraded) != 0 || !slices.Equal(sum.Steps[0].AlreadyCurrent, []string{"0", "5", "10"}) || sum.ModelChanged {
		t.Errorf("all-domains summary: %+v", sum)
	}
	if !strings.Contains(errOut, "The model already has") && !strings.Contains(errOut, "the model is unchanged") {
		t.Errorf("all-domains stderr:\n%s", errOut)
	}
	s.mu.Lock()
	if s.maxDown > 1 {
		t.Errorf("update domains down at once: %v", s.downSets)
	}
	if !slices.Equal(s.order, []int{0, 1, 2, 3, 4}) {
		t.Errorf("domains upgraded in order %v", s.order)
	}
	s.mu.Unlock()
	for _, in := range walkStates(t, c, "web") {
		if !in.Latest || in.Image != "1.1.0" || in.down() {
			t.Errorf("after all domains: instance %d latest=%v image %s health %s", in.ID, in.Latest, in.Image, in.Health)
		}
	}

	// Defect: up-to-date VMs were upgraded again. A re-run does nothing,
	// and needs no confirmation since nothing changes.
	out, errOut, code = c.run("vmss", "upgrade", "-g", "rg1", "-n", "web", "--new-version", "1.1.0", "--all-domains", "--query", "steps[].upgraded[]", "-o", "json")
	if code != ExitOK || strings.TrimSpace(out) != "[]" {
		t.Errorf("re-run: exit %d, stdout %q\n%s", code, out, errOut)
	}

	// Defect: vmssupgrade could not change the SKU. --sku (with a version)
	// on chosen instances; the table output.
	addDemoImage(t, c, "guest2", "3.0.0", true)
	out, errOut, code = c.run("vmss", "upgrade", "-g", "rg1", "-n", "web", "--sku", "guest2", "--new-version", "3.0.0", "--instance-ids", "7,3", "-y", "-o", "table")
	if code != ExitOK || !strings.Contains(out, "instances  Succeeded  3,7") {
		t.Errorf("sku change: exit %d, stdout %q\n%s", code, out, errOut)
	}
	for _, in := range walkStates(t, c, "web") {
		if (in.ID == 3 || in.ID == 7) != (in.Latest && in.Image == "3.0.0") {
			t.Errorf("after the sku change: instance %d latest=%v image %s", in.ID, in.Latest, in.Image)
		}
	}
	if v := modelVersion(t, c, "web"); v != "vmssd:demo:guest2:3.0.0" {
		t.Errorf("model after the sku change: %s", v)
	}

	// --no-wait starts one domain and returns.
	out, errOut, code = c.run("vmss", "upgrade", "-g", "rg1", "-n", "web", "--update-domain", "1", "--no-wait", "-y", "--query", "status", "-o", "tsv")
	if code != ExitOK || out != "Started\n" || !strings.Contains(errOut, "Upgrade of update domain 1 started (1, 6)") {
		t.Errorf("--no-wait: exit %d, stdout %q\n%s", code, out, errOut)
	}
	testenv.Eventually(t, 60*time.Second, "UD 1 upgraded after --no-wait", func() bool {
		for _, in := range walkStates(t, c, "web") {
			if in.UD == 1 && (!in.Latest || in.Image != "3.0.0" || in.down()) {
				return false
			}
		}
		return true
	})
}

// TestUpgradeBadImage: a bad image stops the walk at the first domain with
// the health-failure exit code; a short --timeout gives the timeout exit
// code first. Defects: vmssupgrade had no timeout and no failure branch (it
// looped forever on a failed VM) and walked on regardless of health.
func TestUpgradeBadImage(t *testing.T) {
	e := testenv.Start(t, testenv.Options{HealthGrace: 6 * time.Second})
	c := newUpgradeCtl(t, e)
	c.ok("group", "create", "-n", "rg1", "-o", "none")
	addDemoImage(t, c, "guest", "2.0.0", false)
	createWalkSet(t, c, "web", 5, "1.0.0")

	// The bad instance stays Initializing for the grace period: longer
	// than --timeout.
	out, errOut, code := c.run("vmss", "upgrade", "-g", "rg1", "-n", "web", "--new-version", "2.0.0", "--all-domains", "-y", "--timeout", "2s", "-o", "json")
	if code != ExitTimeout || !strings.Contains(errOut, "update domain 0: not healthy on the new model after 2s: still waiting for instance 0") {
		t.Errorf("timeout: exit %d\n%s", code, errOut)
	}
	var sum upgradeSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Status != "TimedOut" || len(sum.Steps) != 1 {
		t.Errorf("timeout summary: %v %+v", err, sum)
	}

	// Resume (the model already has 2.0.0): the probe fails after the
	// grace period and the walk stops at the first domain.
	out, errOut, code = c.run("vmss", "upgrade", "-g", "rg1", "-n", "web", "--all-domains", "-y", "--timeout", "60s", "-o", "json")
	if code != ExitHealthFailed || !strings.Contains(errOut, "update domain 0: health check failed, the walk stopped (instance 0: unhealthy on the new model") {
		t.Errorf("health failure: exit %d\n%s", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil || sum.Status != "Failed" || len(sum.Steps) != 1 || len(sum.Steps[0].Failed) != 1 {
		t.Errorf("failure summary: %v %+v", err, sum)
	}
	for _, in := range walkStates(t, c, "web") {
		if in.UD != 0 && (in.Latest || in.Image != "1.0.0" || in.down()) {
			t.Errorf("instance %d (UD %d) was touched after the failed domain: latest=%v image %s health %s", in.ID, in.UD, in.Latest, in.Image, in.Health)
		}
	}

	// Ctrl-C while waiting: exit 130, and where the walk stood.
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &cancelOn{text: "update domain 1 batch 1/1", cancel: cancel}
	code = Execute(ctx, []string{"vmss", "upgrade", "-g", "rg1", "-n", "web", "--update-domain", "1", "-y", "--timeout", "60s"},
		nil, io.Discard, stderr, func(k string) string { return c.env[k] })
	cancel()
	if code != ExitInterrupted || !strings.Contains(stderr.String(), "Interrupted during update domain 1: the upgrades already sent (1) go on. Run the same command again to resume") {
		t.Errorf("interrupted: exit %d\n%s", code, stderr.String())
	}

	// Going back to the previous version heals the domains.
	for _, ud := range []string{"0", "1"} {
		if _, errOut, code := c.run("vmss", "upgrade", "-g", "rg1", "-n", "web", "--new-version", "1.0.0", "--update-domain", ud, "-y"); code != ExitOK {
			t.Errorf("UD %s back to 1.0.0: exit %d\n%s", ud, code, errOut)
		}
	}
	for _, in := range walkStates(t, c, "web") {
		// The others run 1.0.0 too, on an older model version.
		if (in.UD <= 1) != in.Latest || in.Image != "1.0.0" || in.down() {
			t.Errorf("after going back: instance %d latest=%v image %s health %s", in.ID, in.Latest, in.Image, in.Health)
		}
	}
}

// cancelOn is a stderr that cancels (Ctrl-C) once the command wrote text.
type cancelOn struct {
	bytes.Buffer
	text   string
	cancel func()
}

func (c *cancelOn) Write(p []byte) (int, error) {
	n, err := c.Buffer.Write(p)
	if strings.Contains(c.Buffer.String(), c.text) {
		c.cancel()
	}
	return n, err
}

// TestUpgradeConfirmPrompt answers the prompt on a real terminal: no keeps
// everything as it was (exit 6), yes upgrades; the progress is a refreshed
// line with bars on a terminal.
func TestUpgradeConfirmPrompt(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newUpgradeCtl(t, e)
	c.ok("group", "create", "-n", "rg1", "-o", "none")
	createWalkSet(t, c, "web", 2, "1.0.0")

	master, slave := openPTY(t)
	defer slave.Close()
	var screen bytes.Buffer
	var mu sync.Mutex
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	args := []string{"vmss", "upgrade", "-g", "rg1", "-n", "web", "--new-version", "1.1.0", "--instance-ids", "1"}

	if _, err := master.WriteString("n\n"); err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	if _, code := c.runIn(slave, &errOut, args...); code != ExitDeclined || !strings.Contains(errOut.String(), "Proceed with the upgrade? (y/N): ERROR: upgrade declined: nothing was changed") {
		t.Errorf("declined: exit %d\n%s", code, errOut.String())
	}
	if v := modelVersion(t, c, "web"); v != "vmssd:demo:guest:1.0.0" {
		t.Errorf("declined upgrade changed the model: %s", v)
	}

	if _, err := master.WriteString("y\n"); err != nil {
		t.Fatal(err)
	}
	out, code := c.runIn(slave, slave, append(args, "--query", "steps[0].upgraded", "-o", "tsv")...)
	if code != ExitOK || out != "1\n" {
		t.Errorf("confirmed: exit %d, stdout %q", code, out)
	}
	testenv.Eventually(t, 5*time.Second, "terminal output", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(screen.String(), "instances: done in")
	})
	mu.Lock()
	got := screen.String()
	mu.Unlock()
	if !strings.Contains(got, "\r\x1b[Kinstances batch 1/1 [") || !strings.Contains(got, "Proceed with the upgrade? (y/N)") {
		t.Errorf("terminal output: %q", got)
	}
}

// TestUpgradeUsage: what vmssupgrade let through silently is refused.
func TestUpgradeUsage(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "vmssctl.json")
	if err := os.WriteFile(cfg, []byte(`{"endpoint":"https://127.0.0.1:1","clientId":"x","clientSecret":"y","subscription":"s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &ctl{t: t, env: map[string]string{"VMSSCTL_CONFIG": cfg}}
	base := []string{"vmss", "upgrade", "-g", "rg", "-n", "x"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		// vmssupgrade: -n silently beat -c.
		{[]string{"--new-version", "1", "--custom-uri", "u", "--all-domains"}, "--custom-uri cannot be combined"},
		// vmssupgrade: -u beat -i beat -l.
		{[]string{"--update-domain", "0", "--instance-ids", "1"}, "exactly one of"},
		{[]string{"--all-domains", "--update-domain", "1"}, "exactly one of"},
		{[]string{"--new-version", "1"}, "exactly one of"},
		// vmssupgrade: -l was pasted into the JSON body.
		{[]string{"--instance-ids", `1","2`}, "--instance-ids"},
		{[]string{"--instance-ids", "[1]"}, "is not an instance id"},
		{[]string{"--instance-ids", "*"}, "not a rolling upgrade"},
		{[]string{"--update-domain", "-1"}, "must not be negative"},
		{[]string{"--all-domains", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"--all-domains", "--no-wait"}, "--no-wait cannot walk several domains"},
		{[]string{"--update-domain", "0", "--no-wait", "--batch-size", "2"}, "--no-wait cannot be combined"},
	} {
		out, errOut, code := c.run(append(base, tc.args...)...)
		if code != ExitUsage || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q (want %q)", tc.args, code, out, errOut, tc.want)
		}
	}
}

// TestUpgradeRefusesNonManualPolicy: the walk and a server-side policy
// would fight; the walk refuses and says what to use instead.
func TestUpgradeRefusesNonManualPolicy(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newUpgradeCtl(t, e)
	c.ok("group", "create", "-n", "rg1", "-o", "none")
	c.ok("vmss", "create", "-g", "rg1", "-n", "auto", "--image", "vmssd:demo:guest:1.0.0", "--instance-count", "1", "--upgrade-policy-mode", "Automatic", "-o", "none")
	_, errOut, code := c.run("vmss", "upgrade", "-g", "rg1", "-n", "auto", "--new-version", "1.1.0", "--all-domains", "-y")
	if code != ExitUsage || !strings.Contains(errOut, "upgrade policy is Automatic") {
		t.Errorf("automatic: exit %d, %q", code, errOut)
	}
	if v := modelVersion(t, c, "auto"); v != "vmssd:demo:guest:1.0.0" {
		t.Errorf("refused walk changed the model: %s", v)
	}
	_, errOut, code = c.run("vmss", "upgrade", "-g", "rg1", "-n", "missing", "--all-domains", "-y")
	if code != ExitNotFound || !strings.Contains(errOut, "ResourceNotFound") {
		t.Errorf("missing set: exit %d, %q", code, errOut)
	}
}

// TestUpgradePolicyFlags: `vmss update` sets the upgrade policy with az's
// flag names (and vmssd's extensions as their tags).
func TestUpgradePolicyFlags(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newUpgradeCtl(t, e)
	c.ok("group", "create", "-n", "rg1", "-o", "none")
	c.ok("vmss", "create", "-g", "rg1", "-n", "web", "--image", "vmssd:demo:guest:latest", "--instance-count", "1", "-o", "none")

	var set armcompute.VirtualMachineScaleSet
	c.json(&set, "vmss", "update", "-g", "rg1", "-n", "web", "--upgrade-policy-mode", "rolling",
		"--max-batch-instance-percent", "30", "--max-unhealthy-instance-percent", "40", "--max-unhealthy-upgraded-instance-percent", "50",
		"--pause-time-between-batches", "90s", "--prioritize-unhealthy-instances", "true", "--max-surge", "false",
		"--rollback-failed-instances-on-policy-breach", "true", "--enable-auto-os-upgrade", "true", "--disable-auto-rollback", "false",
		"--domain-aware", "true", "--approval", "firstbatch")
	c.json(&set, "vmss", "show", "-g", "rg1", "-n", "web")
	up := set.Properties.UpgradePolicy
	rp, ap := up.RollingUpgradePolicy, up.AutomaticOSUpgradePolicy
	if str(up.Mode) != "Rolling" || rp == nil || ap == nil {
		t.Fatalf("upgrade policy: %+v", up)
	}
	if *rp.MaxBatchInstancePercent != 30 || *rp.MaxUnhealthyInstancePercent != 40 || *rp.MaxUnhealthyUpgradedInstancePercent != 50 ||
		str(rp.PauseTimeBetweenBatches) != "PT1M30S" || !*rp.PrioritizeUnhealthyInstances || *rp.MaxSurge || !*rp.RollbackFailedInstancesOnPolicyBreach {
		t.Errorf("rolling policy: %s", mustJSON(rp))
	}
	if !*ap.EnableAutomaticOSUpgrade || *ap.DisableAutomaticRollback {
		t.Errorf("automatic OS upgrade policy: %s", mustJSON(ap))
	}
	if str(set.Tags[tagDomainAware]) != "true" || str(set.Tags[tagApproval]) != "firstBatch" {
		t.Errorf("tags: %s", mustJSON(set.Tags))
	}
	// Flags change only what they name; --approval none removes the gate.
	c.ok("vmss", "update", "-g", "rg1", "-n", "web", "--max-batch-instance-percent", "20", "--approval", "none")
	set = armcompute.VirtualMachineScaleSet{} // (decoding into a used map would merge into it)
	c.json(&set, "vmss", "show", "-g", "rg1", "-n", "web")
	rp = set.Properties.UpgradePolicy.RollingUpgradePolicy
	if *rp.MaxBatchInstancePercent != 20 || *rp.MaxUnhealthyInstancePercent != 40 || str(set.Properties.UpgradePolicy.Mode) != "Rolling" {
		t.Errorf("after a second update: %s", mustJSON(set.Properties.UpgradePolicy))
	}
	if _, ok := set.Tags[tagApproval]; ok || str(set.Tags[tagDomainAware]) != "true" {
		t.Errorf("tags after --approval none: %s", mustJSON(set.Tags))
	}

	// vmss create takes the same flags (its own --upgrade-policy-mode).
	set = armcompute.VirtualMachineScaleSet{}
	c.json(&set, "vmss", "create", "-g", "rg1", "-n", "web2", "--image", "vmssd:demo:guest:latest", "--instance-count", "0",
		"--upgrade-policy-mode", "Rolling", "--max-batch-instance-percent", "50", "--pause-time-between-batches", "PT2S",
		"--domain-aware", "true", "--approval", "none")
	if rp := set.Properties.UpgradePolicy.RollingUpgradePolicy; str(set.Properties.UpgradePolicy.Mode) != "Rolling" || rp == nil ||
		*rp.MaxBatchInstancePercent != 50 || str(rp.PauseTimeBetweenBatches) != "PT2S" || str(set.Tags[tagDomainAware]) != "true" {
		t.Errorf("create with policy flags: %s %s", mustJSON(set.Properties.UpgradePolicy), mustJSON(set.Tags))
	}
	// The server's ranges (Azure's) are its to check.
	if _, errOut, code := c.run("vmss", "update", "-g", "rg1", "-n", "web", "--max-batch-instance-percent", "3"); code != ExitError ||
		!strings.Contains(errOut, "InvalidParameter") || !strings.Contains(errOut, "between 5 and 100") {
		t.Errorf("batch percent 3: exit %d, %q", code, errOut)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-batch-instance-percent", "150"}, "a percentage (0-100)"},
		{[]string{"--pause-time-between-batches", "soon"}, "ISO 8601"},
		{[]string{"--max-surge", "maybe"}, "choose from true, false"},
		{[]string{"--upgrade-policy-mode", "Sometimes"}, "invalid choice"},
		{[]string{"--approval", "always"}, "invalid choice"},
		{nil, "at least one --set PATH=VALUE or upgrade policy flag"},
	} {
		out, errOut, code := c.run(append([]string{"vmss", "update", "-g", "rg1", "-n", "web"}, tc.args...)...)
		if code != ExitUsage || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q (want %q)", tc.args, code, out, errOut, tc.want)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestRollingUpgradeCommands drives the server's rolling upgrades through
// vmssctl: start (osRollingUpgrade), an approval gate shown by get-latest
// and passed with approve, cancel, and the history.
func TestRollingUpgradeCommands(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newUpgradeCtl(t, e)
	c.ok("group", "create", "-n", "rg1", "-o", "none")
	c.ok("vmss", "create", "-g", "rg1", "-n", "web", "--image", "vmssd:demo:guest:latest", "--instance-count", "4",
		"--upgrade-policy-mode", "Rolling", "-o", "none")
	rg := []string{"-g", "rg1", "-n", "web"}
	cmd := func(args ...string) []string { return append(args, rg...) }

	// Nothing ran yet: get-latest is not found, cancel has nothing to stop.
	if _, errOut, code := c.run(cmd("vmss", "rolling-upgrade", "get-latest")...); code != ExitNotFound || !strings.Contains(errOut, "ERROR: NotFound: ") {
		t.Errorf("get-latest before any: exit %d, %q", code, errOut)
	}
	if _, errOut, code := c.run(cmd("vmss", "rolling-upgrade", "cancel")...); code != ExitError || !strings.Contains(errOut, "OperationNotAllowed") {
		t.Errorf("cancel with nothing running: exit %d, %q", code, errOut)
	}

	// A canary: stop after the first batch (one instance of four) until approved.
	c.ok(cmd("vmss", "update", "--max-batch-instance-percent", "25", "--approval", "firstBatch", "-o", "none")...)
	addDemoImage(t, c, "guest", "1.2.0", true)
	if out, errOut, code := c.run(cmd("vmss", "rolling-upgrade", "start", "--no-wait")...); code != ExitOK || out != "" {
		t.Fatalf("start --no-wait: exit %d, %q %q", code, out, errOut)
	}
	phase := func() string {
		out, _, code := c.run(cmd("vmss", "rolling-upgrade", "get-latest", "--query", "[[properties.runningStatus.code, properties.vmssd.phase]]", "-o", "tsv")...)
		if code != ExitOK {
			return ""
		}
		return strings.TrimSpace(out)
	}
	testenv.Eventually(t, 60*time.Second, "the rollout waiting for approval", func() bool { return phase() == "RollingForward\tAwaitingApproval" })
	out := c.ok(cmd("vmss", "rolling-upgrade", "get-latest", "-o", "table")...)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[2], "RollingForward  AwaitingApproval") {
		t.Errorf("get-latest table:\n%s", out)
	}
	upgraded := 0
	for _, in := range walkStates(t, c, "web") {
		if in.Image == "1.2.0" {
			upgraded++
		}
	}
	if upgraded != 1 {
		t.Errorf("%d instances upgraded at the canary gate, want 1", upgraded)
	}
	var st map[string]any
	c.json(&st, cmd("vmss", "rolling-upgrade", "approve")...)
	if props, _ := st["properties"].(map[string]any); props == nil || props["runningStatus"] == nil {
		t.Errorf("approve answer: %v", st)
	}
	if _, errOut, code := c.run(cmd("vmss", "rolling-upgrade", "approve")...); code != ExitError || !strings.Contains(errOut, "NoApprovalPending") {
		t.Errorf("a second approve: exit %d, %q", code, errOut)
	}
	testenv.Eventually(t, 60*time.Second, "the rollout completed", func() bool { return strings.HasPrefix(phase(), "Completed") })
	for _, in := range walkStates(t, c, "web") {
		if in.Image != "1.2.0" || in.down() {
			t.Errorf("after the rollout: instance %d image %s health %s", in.ID, in.Image, in.Health)
		}
	}

	// Cancel at a gate: every batch waits for approval.
	c.ok(cmd("vmss", "update", "--approval", "eachBatch", "-o", "none")...)
	addDemoImage(t, c, "guest", "1.3.0", true)
	c.ok(cmd("vmss", "rolling-upgrade", "start", "--no-wait")...)
	testenv.Eventually(t, 60*time.Second, "the second rollout at its gate", func() bool { return phase() == "RollingForward\tAwaitingApproval" })
	c.ok(cmd("vmss", "rolling-upgrade", "cancel")...)
	if p := phase(); !strings.HasPrefix(p, "Cancelled") {
		t.Errorf("after cancel: %q", p)
	}

	// Without a gate, start waits for the whole rollout.
	c.ok(cmd("vmss", "update", "--approval", "none", "-o", "none")...)
	if _, errOut, code := c.run(cmd("vmss", "rolling-upgrade", "start")...); code != ExitOK {
		t.Fatalf("start: exit %d, %q", code, errOut)
	}
	if p := phase(); !strings.HasPrefix(p, "Completed") {
		t.Errorf("after start: %q", p)
	}
	for _, in := range walkStates(t, c, "web") {
		if in.Image != "1.3.0" {
			t.Errorf("after start: instance %d image %s", in.ID, in.Image)
		}
	}

	// The history, newest first.
	rows := c.tsvRows(cmd("vmss", "get-os-upgrade-history", "--query", "[].[properties.runningStatus.code, properties.startedBy, properties.targetImageReference.exactVersion]")...)
	want := [][]string{{"Completed", "User", "1.3.0"}, {"Cancelled", "User", "1.3.0"}, {"Completed", "User", "1.2.0"}}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("history: %v, want %v", rows, want)
	}
	out = c.ok(cmd("vmss", "get-os-upgrade-history", "-o", "table")...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || strings.Join(strings.Fields(lines[0]), " ") != "Status StartedBy StartTime EndTime TargetImage Successful Failed Error" ||
		!strings.Contains(lines[2], "vmssd:demo:guest:latest") {
		t.Errorf("history table:\n%s", out)
	}
}
