package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/internal/template"
	"github.com/vmssd/vmssd/internal/testenv"
)

// BenchmarkDeployNewNetwork10 measures the new-network template
// (testdata/templates/vmss-new-network.json: storage account, virtual
// network, public IP, load balancer, scale set of 10) from the deployment
// PUT to all 10 instances healthy, against the same resources (the same
// evaluated bodies) created by direct API calls in sequence, each waiting
// for its operation, then waiting for the 10 instances to be healthy.
//
//	go test ./tests/e2e -run '^$' -bench DeployNewNetwork10 -benchtime 3x
func BenchmarkDeployNewNetwork10(b *testing.B) {
	dataDir := b.TempDir()
	b.Cleanup(func() { testenv.KillInstances(dataDir) })
	p := startProc(b, dataDir, freePort(b))
	e := attach(b, dataDir, p.url)
	tmpl := readTemplate(b, "vmss-new-network.json")
	var deployT, directT time.Duration
	for i := 0; b.Loop(); i++ {
		// Template deployment.
		rg := fmt.Sprintf("dep%d", i)
		e.CreateRG(rg)
		start := time.Now()
		r := e.Do(http.MethodPut, depPath(e, rg, "d"), depBody(tmpl, demoParams("bench", 10, nil)))
		if st, res := waitDeployment(b, e, r, 3*time.Minute); st != "Succeeded" {
			b.Fatalf("deployment %s: %v", st, res)
		}
		outs := props(e.Do(http.MethodGet, depPath(e, rg, "d"), nil).Map())["outputs"].(map[string]any)
		id := outs["vmssId"].(map[string]any)["value"].(string)
		waitHealthyFast(b, e, rg, id[strings.LastIndex(id, "/")+1:], 10)
		deployT += time.Since(start)

		// The same resources by direct calls in sequence.
		rg2 := fmt.Sprintf("direct%d", i)
		e.CreateRG(rg2)
		start = time.Now()
		name := directCalls(b, e, rg2, tmpl)
		waitHealthyFast(b, e, rg2, name, 10)
		directT += time.Since(start)

		b.StopTimer()
		waitOp(b, e, e.Do(http.MethodDelete, e.VMSSPath(rg, id[strings.LastIndex(id, "/")+1:]), nil))
		waitOp(b, e, e.Do(http.MethodDelete, e.VMSSPath(rg2, name), nil))
		b.StartTimer()
	}
	b.ReportMetric(deployT.Seconds()/float64(b.N), "s/deploy-to-healthy")
	b.ReportMetric(directT.Seconds()/float64(b.N), "s/direct-to-healthy")
}

// directCalls evaluates the template for rg and PUTs its resources one by
// one in template order (which is a dependency order), waiting for each
// one's operation; it returns the scale set's name.
func directCalls(b *testing.B, e *testenv.Env, rg string, raw map[string]any) string {
	b.Helper()
	ctx := context.Background()
	t, err := template.FromValue(raw)
	if err != nil {
		b.Fatal(err)
	}
	env := template.Env{
		Subscription:  template.Subscription{SubscriptionID: e.Sub},
		ResourceGroup: &template.ResourceGroup{Name: rg, Location: "local"},
		Reference: func(_ context.Context, req template.ReferenceRequest) (any, error) {
			r := e.Do(http.MethodGet, req.ResourceID+"?api-version="+url.QueryEscape(req.APIVersion), nil)
			return r.Map()["properties"], nil
		},
	}
	params, err := template.ParameterValues(demoParams("bench", 10, nil))
	if err != nil {
		b.Fatal(err)
	}
	d, err := template.Prepare(ctx, t, params, env)
	if err != nil {
		b.Fatal(err)
	}
	name := ""
	for _, res := range d.Resources {
		body, err := d.EvaluateBody(ctx, res)
		if err != nil {
			b.Fatal(err)
		}
		for _, k := range []string{"apiVersion", "dependsOn", "name", "type"} {
			delete(body, k)
		}
		var v any = body
		if res.Type == "Microsoft.Compute/virtualMachineScaleSets" {
			v = template.CoerceTo(body, reflect.TypeFor[armcompute.VirtualMachineScaleSet]())
			name = res.Name
		}
		j, _ := json.Marshal(v)
		r := e.Do(http.MethodPut, res.ID+"?api-version="+url.QueryEscape(res.APIVersion), j)
		if r.Status >= 300 {
			b.Fatalf("PUT %s: %d %s", res.ID, r.Status, r.Body)
		}
		if r.Header.Get("Azure-AsyncOperation") != "" {
			waitOp(b, e, r)
		}
	}
	return name
}
