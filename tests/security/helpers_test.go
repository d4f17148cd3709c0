package security

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// adminAPI is the operator APIs' api-version.
const adminAPI = "2015-12-01-preview"

// call is one HTTP request of a table.
type call struct {
	method string
	// path is absolute on the server and may carry a query; e.API is added
	// unless it names an api-version or noAPI is set.
	path   string
	body   any // nil, string, []byte or a value to marshal
	header map[string]string
	noAPI  bool
}

func (c call) String() string { return c.method + " " + c.path }

// send issues c with the bearer token ("" sends no Authorization header).
// Unlike testenv.Env.DoAs it reports through t (usable inside a fuzz
// target) and can omit the api-version.
func send(t testing.TB, e *testenv.Env, token string, c call) *testenv.Response {
	t.Helper()
	var rd io.Reader
	switch b := c.body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	url := e.Server.URL + c.path
	if !c.noAPI && !strings.Contains(strings.ToLower(url), "api-version=") {
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		url += sep + "api-version=" + e.API
	}
	req, err := http.NewRequest(c.method, url, rd)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", c, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &testenv.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// armError is ARM's error body.
type armError struct {
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Target  string `json:"target"`
		Details []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"details"`
	} `json:"error"`
}

// wellFormedError checks that r is an ARM error: not 5xx, a JSON body
// {"error":{"code","message"}} and an x-ms-error-code header equal to the
// code. It returns the decoded error.
func wellFormedError(r *testenv.Response) (*armError, error) {
	if r.Status >= 500 {
		return nil, fmt.Errorf("server error %d: %s", r.Status, r.Body)
	}
	if r.Status < 400 {
		return nil, fmt.Errorf("status %d is not an error: %s", r.Status, r.Body)
	}
	var e armError
	if err := json.Unmarshal(r.Body, &e); err != nil || e.Error == nil {
		return nil, fmt.Errorf("status %d: body is not an ARM error (%v): %q", r.Status, err, r.Body)
	}
	if e.Error.Code == "" || e.Error.Message == "" {
		return nil, fmt.Errorf("status %d: error without code or message: %s", r.Status, r.Body)
	}
	if h := r.Header.Get("x-ms-error-code"); h != e.Error.Code {
		return nil, fmt.Errorf("status %d: x-ms-error-code %q != error.code %q", r.Status, h, e.Error.Code)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, fmt.Errorf("status %d: Content-Type %q", r.Status, ct)
	}
	return &e, nil
}

// wantError asserts r is a well-formed ARM error with the status and (if
// not empty) code and target.
func wantError(t testing.TB, what string, r *testenv.Response, status int, code, target string) {
	t.Helper()
	e, err := wellFormedError(r)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if r.Status != status || (code != "" && e.Error.Code != code) {
		t.Errorf("%s: got %d %s, want %d %s (%s)", what, r.Status, e.Error.Code, status, code, e.Error.Message)
	}
	if target != "" && e.Error.Target != target {
		t.Errorf("%s: target %q, want %q", what, e.Error.Target, target)
	}
}

// opStatus polls the Azure-AsyncOperation of a 2xx write until it ends
// and returns the final status. Unlike testenv.Env.Wait it reports through
// t, so fuzz targets may use it.
func opStatus(t testing.TB, e *testenv.Env, r *testenv.Response) string {
	t.Helper()
	u := r.Header.Get("Azure-AsyncOperation")
	if r.Status/100 != 2 || u == "" {
		t.Fatalf("write failed or has no operation: %d %s", r.Status, r.Body)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		op := send(t, e, e.Token, call{method: http.MethodGet, path: strings.TrimPrefix(u, e.Server.URL)})
		var st struct {
			Status string `json:"status"`
		}
		if err := op.JSON(&st); err != nil || op.Status != http.StatusOK {
			t.Fatalf("operation status: %d %s", op.Status, op.Body)
		}
		if st.Status != "InProgress" {
			return st.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("operation %s still InProgress", u)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOp waits for the operation of a 2xx write to succeed.
func waitOp(t testing.TB, e *testenv.Env, r *testenv.Response) {
	t.Helper()
	if st := opStatus(t, e, r); st != "Succeeded" {
		t.Fatalf("operation ended %s", st)
	}
}

// deleteAtEnd deletes scale sets (as token) before the server stops, so
// that their guest processes do not outlive the test. Register it after
// testenv.Start: cleanups run last-registered first.
func deleteAtEnd(t testing.TB, e *testenv.Env, token string, paths ...string) {
	t.Cleanup(func() {
		for _, p := range paths {
			r := send(t, e, token, call{method: http.MethodDelete, path: p})
			if r.Status == http.StatusAccepted {
				waitOp(t, e, r)
			}
		}
	})
}

// instanceIDs lists the ids of a set's instances as the token's owner.
func instanceIDs(t testing.TB, e *testenv.Env, token, vmssPath string) []string {
	t.Helper()
	var ids []string
	url := vmssPath + "/virtualMachines"
	for url != "" {
		r := send(t, e, token, call{method: http.MethodGet, path: strings.TrimPrefix(url, e.Server.URL)})
		if r.Status != http.StatusOK {
			t.Fatalf("list instances: %d %s", r.Status, r.Body)
		}
		var page struct {
			Value []struct {
				InstanceID string `json:"instanceId"`
				Properties struct {
					ProvisioningState string `json:"provisioningState"`
				} `json:"properties"`
			} `json:"value"`
			NextLink string `json:"nextLink"`
		}
		if err := r.JSON(&page); err != nil {
			t.Fatalf("list instances: %v", err)
		}
		for _, v := range page.Value {
			ids = append(ids, v.InstanceID)
		}
		url = page.NextLink
	}
	return ids
}

// setSnapshot is what must not change under an attack.
type setSnapshot struct {
	ETag      string
	Capacity  int64
	Instances []string
	Tags      map[string]string
}

func snapshot(t testing.TB, e *testenv.Env, token, vmssPath string) setSnapshot {
	t.Helper()
	r := send(t, e, token, call{method: http.MethodGet, path: vmssPath})
	if r.Status != http.StatusOK {
		t.Fatalf("get set: %d %s", r.Status, r.Body)
	}
	var s struct {
		Etag string `json:"etag"`
		SKU  struct {
			Capacity int64 `json:"capacity"`
		} `json:"sku"`
		Tags map[string]string `json:"tags"`
	}
	if err := r.JSON(&s); err != nil {
		t.Fatalf("get set: %v", err)
	}
	if h := r.Header.Get("ETag"); h != s.Etag {
		t.Errorf("ETag header %q != etag %q", h, s.Etag)
	}
	return setSnapshot{ETag: s.Etag, Capacity: s.SKU.Capacity, Instances: instanceIDs(t, e, token, vmssPath), Tags: s.Tags}
}

// start starts a server whose client connections are closed before it
// stops, so that its graceful shutdown does not wait for idle keep-alive
// connections that never carried a request.
func start(t testing.TB, o testenv.Options) *testenv.Env {
	e := testenv.Start(t, o)
	t.Cleanup(e.HTTP.CloseIdleConnections)
	return e
}
