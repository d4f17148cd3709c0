package dashboard

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseCreate(t *testing.T) {
	ok := func(mod func(url.Values)) url.Values {
		f := url.Values{"sub": {"s1"}, "rg": {"s2/grp"}, "name": {"web"}, "image": {"vmssd:demo:guest:1.0.0"},
			"capacity": {"3"}, "size": {"Standard_A1"}, "mode": {"Rolling"}}
		if mod != nil {
			mod(f)
		}
		return f
	}
	tests := []struct {
		name    string
		form    url.Values
		wantRef SetRef
		newRG   bool
		wantErr string
	}{
		{name: "existing group", form: ok(nil), wantRef: SetRef{Sub: "s2", RG: "grp", Name: "web"}},
		{name: "new group", form: ok(func(f url.Values) { f.Set("new_rg", " fresh ") }), wantRef: SetRef{Sub: "s1", RG: "fresh", Name: "web"}, newRG: true},
		{name: "no group", form: ok(func(f url.Values) { f.Set("rg", "") }), wantErr: "resource group"},
		{name: "no subscription", form: ok(func(f url.Values) { f.Set("rg", ""); f.Set("new_rg", "g"); f.Set("sub", "") }), wantErr: "subscription"},
		{name: "no name", form: ok(func(f url.Values) { f.Set("name", "  ") }), wantErr: "name"},
		{name: "slash in name", form: ok(func(f url.Values) { f.Set("name", "a/b") }), wantErr: "may not contain"},
		{name: "three-part image", form: ok(func(f url.Values) { f.Set("image", "vmssd:demo:guest") }), wantErr: "publisher:offer:sku:version"},
		{name: "empty image part", form: ok(func(f url.Values) { f.Set("image", "vmssd::guest:1") }), wantErr: "publisher:offer:sku:version"},
		{name: "negative count", form: ok(func(f url.Values) { f.Set("capacity", "-1") }), wantErr: "whole number"},
		{name: "count not a number", form: ok(func(f url.Values) { f.Set("capacity", "two") }), wantErr: "whole number"},
		{name: "no size", form: ok(func(f url.Values) { f.Del("size") }), wantErr: "VM size"},
		// The API, not the form, judges names it does not accept.
		{name: "name the API refuses", form: ok(func(f url.Values) { f.Set("name", "bad name!") }), wantRef: SetRef{Sub: "s2", RG: "grp", Name: "bad name!"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := parseCreate(tt.form)
			if tt.wantErr != "" {
				if err == nil || err.Code != "InvalidParameter" || !strings.Contains(err.Message, tt.wantErr) {
					t.Fatalf("error %v, want InvalidParameter containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v", err)
			}
			if req.Ref != tt.wantRef || req.NewRG != tt.newRG {
				t.Fatalf("ref %+v new %v, want %+v new %v", req.Ref, req.NewRG, tt.wantRef, tt.newRG)
			}
			got := mustJSON(t, req.Body)
			for _, want := range []string{`"capacity":3`, `"name":"Standard_A1"`, `"mode":"Rolling"`,
				`"imageReference":{"offer":"demo","publisher":"vmssd","sku":"guest","version":"1.0.0"}`} {
				if !strings.Contains(got, want) {
					t.Errorf("body %s lacks %s", got, want)
				}
			}
		})
	}
}

func TestComputerPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"web": "web", "my-scale-set-01": "my-scale-", "-x_y": "xy", "!!!": "vm", "bad name!": "badname",
	} {
		if got := computerPrefix(in); got != want || !computerNamePrefixOK(got) {
			t.Errorf("computerPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

// computerNamePrefixOK is the API's rule (apiserver computerNamePrefixRE).
func computerNamePrefixOK(s string) bool {
	if len(s) == 0 || len(s) > 9 || s[0] == '-' {
		return false
	}
	return strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == ""
}
