package apiserver

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/deploy"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store/memstore"
)

func TestQuoteBareKeys(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"properties": {"mode": "Incremental", template:{"a": "x, y: z"}}}`, `{"properties": {"mode": "Incremental", "template":{"a": "x, y: z"}}}`},
		{`{template :{"s": "{b: 1}"}, parameters: {}}`, `{"template" :{"s": "{b: 1}"}, "parameters": {}}`},
		{`{"a": "esc \" {c: d}"}`, `{"a": "esc \" {c: d}"}`},
		{`{"a": true, "b": [null, false]}`, `{"a": true, "b": [null, false]}`},
	}
	for _, tt := range tests {
		got := string(quoteBareKeys([]byte(tt.in)))
		if got != tt.want {
			t.Errorf("quoteBareKeys(%s) = %s, want %s", tt.in, got, tt.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("quoteBareKeys(%s) is not JSON: %s", tt.in, got)
		}
	}
}

func TestFetchLinkRefuses(t *testing.T) {
	s := New(Options{})
	tests := []struct{ uri, want string }{
		{"", "not a valid absolute URI"},
		{"http://example.com/t.json", "must use https"},
		{"file:///etc/passwd", "not a valid absolute URI"},
		{"https://127.0.0.1/t.json", "loopback, private or link-local"},
		{"https://[::1]/t.json", "loopback, private or link-local"},
		{"https://169.254.169.254/metadata", "loopback, private or link-local"},
		{"https://10.0.0.1/t.json", "loopback, private or link-local"},
		// A name that resolves to loopback is refused at dial time.
		{"https://localhost:1/t.json", "resolves to a loopback, private or link-local address"},
	}
	for _, tt := range tests {
		_, err := s.fetchLink(context.Background(), tt.uri, "properties.templateLink.uri")
		e := errs.From(err)
		if err == nil || e.Code != "InvalidContentLink" || !strings.Contains(e.Message, tt.want) || e.Target != "properties.templateLink.uri" {
			t.Errorf("fetchLink(%q) = %v, want InvalidContentLink %q", tt.uri, err, tt.want)
		}
	}
}

func TestISODuration(t *testing.T) {
	for d, want := range map[string]string{"0s": "PT0S", "1.5s": "PT1.5S", "61s": "PT1M1S", "3723.25s": "PT1H2M3.25S"} {
		dd, _ := parseDur(d)
		if got := isoDuration(dd); got != want {
			t.Errorf("isoDuration(%s) = %s, want %s", d, got, want)
		}
	}
}

func parseDur(s string) (time.Duration, error) { return time.ParseDuration(s) }

func TestSweepDeploymentRecords(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	s := New(Options{Store: st})
	put := func(key string, v any) {
		if _, err := st.Txn(ctx, nil, state.PutOp(key, v)); err != nil {
			t.Fatal(err)
		}
	}
	put(model.ResourceGroupKey("sub", "live"), &model.ResourceGroup{Sub: "sub", Name: "live"})
	put(storageKey("sub", "live", "keep"), &storageAccount{Name: "keep"})
	put(storageKey("sub", "gone", "drop"), &storageAccount{Name: "drop"})
	put(deploy.Key("sub", "live", "d"), &deploy.Record{State: deploy.StateSucceeded})
	put(deploy.Key("sub", "gone", "done"), &deploy.Record{State: deploy.StateFailed})
	put(deploy.Key("sub", "gone", "running"), &deploy.Record{State: deploy.StateRunning})
	put(deploy.Key("sub", "", "subscope"), &deploy.Record{State: deploy.StateSucceeded})
	if err := s.sweepDeploymentRecords(ctx); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		storageKey("sub", "live", "keep"): true, storageKey("sub", "gone", "drop"): false,
		deploy.Key("sub", "live", "d"): true, deploy.Key("sub", "gone", "done"): false,
		deploy.Key("sub", "gone", "running"): true, deploy.Key("sub", "", "subscope"): true,
	} {
		_, err := st.Get(ctx, key)
		if got := err == nil; got != want {
			t.Errorf("%s present = %v, want %v (%v)", key, got, want, err)
		}
	}
}
