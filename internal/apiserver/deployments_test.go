package apiserver

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/errs"
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
