package template

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// The scale set body of the Azure Stack template ("overprovision": "true",
// "primary": "true") is refused by the SDK model as written and accepted
// once coerced, as ARM hands it to the compute provider.
func TestCoerceScaleSetBodyToSDKModel(t *testing.T) {
	tmpl := loadVMSS(t)
	d, err := Prepare(t.Context(), tmpl, map[string]any{"vmssName": "web", "adminPassword": "x", "instanceCount": "4"}, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	body, err := d.EvaluateBody(t.Context(), d.Resources[4])
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(body)
	var strict armcompute.VirtualMachineScaleSet
	if err := json.Unmarshal(raw, &strict); err == nil {
		t.Fatal("the uncoerced body unmarshalled: the test would prove nothing")
	}
	coerced := CoerceTo(body, reflect.TypeFor[armcompute.VirtualMachineScaleSet]())
	raw, _ = json.Marshal(coerced)
	var vmss armcompute.VirtualMachineScaleSet
	if err := json.Unmarshal(raw, &vmss); err != nil {
		t.Fatalf("coerced body: %v", err)
	}
	if vmss.Properties == nil || vmss.Properties.Overprovision == nil || !*vmss.Properties.Overprovision {
		t.Fatalf("overprovision = %+v", vmss.Properties)
	}
	if *vmss.SKU.Capacity != 4 || *vmss.SKU.Name != "Standard_A1" {
		t.Fatalf("sku = %+v", vmss.SKU)
	}
	nic := vmss.Properties.VirtualMachineProfile.NetworkProfile.NetworkInterfaceConfigurations[0]
	if nic.Properties.Primary == nil || !*nic.Properties.Primary {
		t.Fatal("primary not coerced")
	}
	if *vmss.Properties.VirtualMachineProfile.StorageProfile.ImageReference.Version != "latest" {
		t.Fatal("image version")
	}
	// The original body is not modified.
	if body["properties"].(map[string]any)["overprovision"] != "true" {
		t.Fatal("CoerceTo changed its input")
	}
}

func TestCoerceTo(t *testing.T) {
	type inner struct {
		N     *int32
		F     float64
		S     string
		B     bool
		Tags  map[string]*string
		List  []*int64
		Named string `json:"renamed"`
		Any   any
	}
	got := CoerceTo(js(`{"n": "7", "f": "1.5", "s": 5, "b": "False", "tags": {"a": 1}, "list": ["1", 2, "x"], "renamed": 3, "any": "9", "unknown": "true", "inner": 1}`), reflect.TypeFor[*inner]())
	want := js(`{"n": 7, "f": 1.5, "s": "5", "b": false, "tags": {"a": "1"}, "list": [1, 2, "x"], "renamed": "3", "any": "9", "unknown": "true", "inner": 1}`)
	if !deepEqual(got, want) {
		t.Fatalf("CoerceTo = %v", got)
	}
}
