package cli

import (
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestQuotaAndUsage: the operator sets a quota with admin quota set, which
// keeps the limits it is not given; vm list-usage (the SDK's UsageClient)
// and admin quota show report it.
func TestQuotaAndUsage(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newCtl(t, e)

	var q adminQuota
	c.json(&q, "admin", "quota", "set", "--vcpus", "7", "--instances", "5")
	if q.VCPUs != 7 || q.Instances != 5 || q.ScaleSets <= 0 || q.SubscriptionID != strings.ToLower(e.Sub) {
		t.Fatalf("quota after set: %+v", q)
	}
	c.json(&q, "admin", "quota", "set", "--id", e.Sub, "--scale-sets", "-1")
	if q.VCPUs != 7 || q.Instances != 5 || q.ScaleSets != -1 {
		t.Fatalf("a second set changed other limits: %+v", q)
	}
	c.ok("group", "create", "-n", "rg1")
	c.ok("vmss", "create", "-g", "rg1", "-n", "web", "--image", "vmssd:demo:guest:latest", "--instance-count", "2")
	t.Cleanup(func() { c.run("vmss", "delete", "-g", "rg1", "-n", "web") })

	var us []*armcompute.Usage
	c.json(&us, "vm", "list-usage", "-l", "local")
	got := map[string][2]int64{}
	for _, u := range us {
		got[str(u.Name.Value)] = [2]int64{int64(*u.CurrentValue), *u.Limit}
	}
	if got["cores"] != [2]int64{2, 7} || got["virtualMachines"] != [2]int64{2, 5} || got["virtualMachineScaleSets"][0] != 1 {
		t.Errorf("list-usage: %v", got)
	}
	out := c.ok("vm", "list-usage", "-o", "table")
	if lines := strings.Split(out, "\n"); strings.Join(strings.Fields(lines[0]), " ") != "Name CurrentValue Limit" || !strings.Contains(out, "Total Regional vCPUs") {
		t.Errorf("list-usage table:\n%s", out)
	}
	out = c.ok("admin", "quota", "show", "-o", "table")
	if !strings.Contains(out, "unlimited") || !strings.Contains(out, "vCPUs") {
		t.Errorf("quota show table:\n%s", out)
	}
	// Beyond the quota: Azure's error, through the CLI.
	if _, errOut, code := c.run("vmss", "scale", "-g", "rg1", "-n", "web", "--new-capacity", "6"); code == 0 || !strings.Contains(errOut, "OperationNotAllowed") {
		t.Errorf("scale beyond the quota: exit %d: %s", code, errOut)
	}
	if _, errOut, code := c.run("admin", "quota", "show", "--id", "no-such-sub"); code == 0 || !strings.Contains(errOut, "SubscriptionNotFound") {
		t.Errorf("quota of an unknown subscription: exit %d: %s", code, errOut)
	}
}

func TestQuotaUsageErrors(t *testing.T) {
	c, _ := newOfflineCtl(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"admin", "quota", "set"}, "at least one of"},
		{[]string{"admin", "quota", "set", "--vcpus", "-2"}, "-1 (unlimited)"},
		{[]string{"admin", "quota", "set", "--instances", "many"}, "invalid argument"},
		{[]string{"vm", "list-usage", "extra"}, "unrecognized arguments"},
	} {
		_, errOut, code := c.run(tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("vmssctl %s: exit %d, stderr %q, want %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}
