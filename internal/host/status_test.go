package host

import (
	"reflect"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
)

// TestSameStatusComparesEveryField changes each field of driver.Status in
// turn: every change must count, or views of the instance (Network,
// PrivateIP, ...) would not update. A field added to driver.Status is
// covered without editing this test.
func TestSameStatusComparesEveryField(t *testing.T) {
	base := driver.Status{
		ID: "i1", Power: driver.PowerRunning, ImageDigest: "sha256:a", HealthURL: "http://127.0.0.1:1/health",
		Ports: map[string]string{"health": "127.0.0.1:1"}, PID: 10, Since: time.Unix(100, 0),
		Message: "m", Restarts: 1, Accel: "kvm", Isolation: "runc", Network: "loopback", PrivateIP: "10.0.0.4",
		Failure: "F",
	}
	if !sameStatus(base, base) {
		t.Fatal("a status differs from itself")
	}
	same := base
	same.Since = base.Since.In(time.FixedZone("x", 3600))
	same.Ports = map[string]string{"health": "127.0.0.1:1"}
	if !sameStatus(base, same) {
		t.Error("equal instants or equal port maps count as a change")
	}
	typ := reflect.TypeFor[driver.Status]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		t.Run(f.Name, func(t *testing.T) {
			changed := base
			changed.Ports = map[string]string{"health": "127.0.0.1:1"}
			v := reflect.ValueOf(&changed).Elem().Field(i)
			switch {
			case f.Type == reflect.TypeFor[time.Time]():
				v.Set(reflect.ValueOf(base.Since.Add(time.Second)))
			case v.Kind() == reflect.String:
				v.SetString(v.String() + "-changed")
			case v.Kind() == reflect.Int:
				v.SetInt(v.Int() + 1)
			case v.Kind() == reflect.Map:
				changed.Ports["ssh"] = "127.0.0.1:2"
			default:
				t.Fatalf("field %s of kind %s: teach this test to change it", f.Name, v.Kind())
			}
			if sameStatus(base, changed) || sameStatus(changed, base) {
				t.Errorf("a change of %s is not seen", f.Name)
			}
		})
	}
}
