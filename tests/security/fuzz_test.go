package security

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/internal/testenv"
)

// maxFuzzCapacity bounds the instances an accepted fuzz body may create
// (each is a real guest process). Larger capacities up to the server's
// maximum (1000) are skipped; beyond it they must be refused.
const maxFuzzCapacity = 3

// FuzzPutScaleSet PUTs arbitrary bytes as a scale set body. Invariant: never
// a 5xx; every non-2xx is a well-formed ARM error with x-ms-error-code;
// every 2xx is a scale set. Accepted sets are deleted at once.
func FuzzPutScaleSet(f *testing.F) {
	valid := func(capacity int, version string) []byte {
		b, _ := json.Marshal(testenv.VMSSBody(capacity, version, "Manual"))
		return b
	}
	for _, seed := range [][]byte{
		valid(0, "latest"),
		valid(1, "1.0.0"),
		valid(1, "9.9.9"),
		valid(0, "not-a-version"),
		[]byte(`{"location":"local"}`),
		[]byte(`{"location":"LOCAL","sku":{"name":"Standard_A1","capacity":0},"tags":{"a":"b"}}`),
		[]byte(`{"location":"local","sku":null,"properties":null}`),
		[]byte(`{"location":"local","sku":{"capacity":-1}}`),
		[]byte(`{"location":"local","sku":{"capacity":1000000}}`),
		[]byte(`{"location":"local","sku":{"capacity":1e400}}`),
		[]byte(`{"location":"local","sku":{"capacity":"lots"}}`),
		[]byte(`{"location":"local","sku":{"capacity":2.5}}`),
		[]byte(`{"location":"mars"}`),
		[]byte(`{"location":7}`),
		[]byte(`{"location":"local","properties":{"platformFaultDomainCount":9}}`),
		[]byte(`{"location":"local","properties":{"upgradePolicy":{"mode":"Sometimes"}}}`),
		[]byte(`{"location":"local","properties":{"upgradePolicy":{"mode":"Rolling","rollingUpgradePolicy":{"maxBatchInstancePercent":0,"pauseTimeBetweenBatches":"forever"}}}}`),
		[]byte(`{"location":"local","properties":{"orchestrationMode":"Flexible"}}`),
		[]byte(`{"location":"local","properties":{"scaleInPolicy":{"rules":[null,"Sideways"]}}}`),
		[]byte(`{"location":"local","properties":{"virtualMachineProfile":{"osProfile":{"computerNamePrefix":"-x"}}}}`),
		[]byte(`{"location":"local","properties":{"virtualMachineProfile":{"storageProfile":{"imageReference":{"id":"/x"}}}}}`),
		[]byte(`{"location":"local","properties":{"virtualMachineProfile":{"storageProfile":{"osDisk":{"image":{"uri":"file:///nonexistent/image.tar.gz"}}}}},"sku":{"capacity":1}}`),
		[]byte(`{"location":"local","properties":{"virtualMachineProfile":null},"sku":{"capacity":1}}`),
		[]byte(`{"location":"local","id":"/subscriptions/other","name":"x","etag":"\"1\"","properties":{"provisioningState":"Succeeded","uniqueId":"u"}}`),
		[]byte(`{"location":"local","location":"mars"}`),
		[]byte(`{"Location":"local","SKU":{"Capacity":2}}`),
		[]byte(`{"location":"local","tags":{"k":"\u0000\ud800"}}`),
		[]byte(`{"location":"local",`),
		[]byte(`{`),
		[]byte(`null`),
		[]byte(`[]`),
		[]byte(`""`),
		[]byte(``),
		[]byte("\xff\xfe{}"),
		[]byte(strings.Repeat("[", 10000) + strings.Repeat("]", 10000)),
		[]byte(`{"location":"local","tags":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat(`}`, 5000) + `}`),
	} {
		f.Add(seed)
	}

	e := start(f, testenv.Options{Store: "memory"})
	e.CreateRG("rg1")
	var n atomic.Int64

	f.Fuzz(func(t *testing.T, body []byte) {
		// Bodies the server may accept with many instances are too
		// expensive here: decode them as the server does and skip them.
		var m armcompute.VirtualMachineScaleSet
		if json.Unmarshal(body, &m) == nil && m.SKU != nil && m.SKU.Capacity != nil &&
			*m.SKU.Capacity > maxFuzzCapacity && *m.SKU.Capacity <= 1000 {
			t.Skip("capacity too large for a fuzz iteration")
		}
		name := fmt.Sprintf("fz%d", n.Add(1))
		path := e.VMSSPath("rg1", name)
		r := send(t, e, e.Token, call{method: http.MethodPut, path: path, body: body})
		switch {
		case r.Status == http.StatusOK || r.Status == http.StatusCreated:
			var got struct {
				ID         string `json:"id"`
				Properties *struct {
					ProvisioningState string `json:"provisioningState"`
				} `json:"properties"`
			}
			if err := json.Unmarshal(r.Body, &got); err != nil || !strings.EqualFold(got.ID, path) || got.Properties == nil || got.Properties.ProvisioningState == "" {
				t.Errorf("accepted (%d) but the body is not the scale set: %v %s", r.Status, err, r.Body)
			}
			if r.Header.Get("Azure-AsyncOperation") == "" {
				t.Errorf("accepted (%d) without Azure-AsyncOperation", r.Status)
			}
			if strings.Contains(string(r.Body), "S3cret") {
				t.Errorf("adminPassword echoed: %s", r.Body)
			}
			// Delete it and wait, so that no guest outlives the run.
			d := send(t, e, e.Token, call{method: http.MethodDelete, path: path})
			if d.Status != http.StatusAccepted {
				t.Fatalf("delete accepted set: %d %s", d.Status, d.Body)
			}
			if st := opStatus(t, e, d); st != "Succeeded" {
				t.Errorf("delete accepted set: operation %s", st)
			}
		default:
			if _, err := wellFormedError(r); err != nil {
				t.Errorf("PUT %q: %v", trim(body), err)
			}
		}
	})
}

func trim(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "..."
	}
	return string(b)
}
