package catalog

import (
	"testing"

	"github.com/vmssd/vmssd/internal/model"
)

func TestCompareVersions(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"1.0.0", "1.0.0", 0},
		{"1.10.0", "1.9.3", 1},
		{"1.2", "1.2.0", -1}, // malformed sorts first
		{"1.2.3.4", "1.2.3", -1},
		{"2.0.0", "10.0.0", -1},
		{"bad", "1.0.0", -1},
		{"1.0.0", "bad", 1},
	}
	for _, c := range cases {
		if got := sign(CompareVersions(c.a, c.b)); got != c.want {
			t.Errorf("CompareVersions(%q,%q)=%d want %d", c.a, c.b, got, c.want)
		}
	}
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

func TestResolve(t *testing.T) {
	all := []model.ImageVersion{
		{Publisher: "vmssd", Offer: "demo", SKU: "guest", Version: "1.9.0"},
		{Publisher: "vmssd", Offer: "demo", SKU: "guest", Version: "1.10.0"},
		{Publisher: "vmssd", Offer: "demo", SKU: "other", Version: "9.0.0"},
	}
	cases := []struct {
		name    string
		ref     Ref
		want    string
		wantErr bool
	}{
		{"latest picks numeric max", Ref{"vmssd", "demo", "guest", "latest"}, "1.10.0", false},
		{"case-insensitive names", Ref{"VMSSD", "Demo", "GUEST", "Latest"}, "1.10.0", false},
		{"pinned", Ref{"vmssd", "demo", "guest", "1.9.0"}, "1.9.0", false},
		{"pinned missing (V3)", Ref{"vmssd", "demo", "guest", "1.8.0"}, "", true},
		{"unknown sku", Ref{"vmssd", "demo", "nope", "latest"}, "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Resolve(c.ref, all)
			if c.wantErr {
				if err == nil || err.Code != "ImageNotFound" || err.Target != "imageReference" {
					t.Fatalf("want ImageNotFound, got %v", err)
				}
				return
			}
			if err != nil || got.Version != c.want {
				t.Fatalf("got %v %v, want %s", got.Version, err, c.want)
			}
		})
	}
}
