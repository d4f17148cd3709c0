package server_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunGuestIfAsked()
	os.Exit(m.Run())
}

const principalsPath = "/providers/vmssd.Admin/principals/"

// token gets an access token from the server's token endpoint with the
// client credentials grant, as azidentity does; "" if refused.
func token(t *testing.T, e *testenv.Env, clientID, secret string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret},
		"scope": {auth.DefaultAudience + "/.default"}}
	resp, err := e.HTTP.PostForm(e.Server.URL+"/vmssd/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		return ""
	}
	return out.AccessToken
}

// putPrincipal creates or updates a principal as the operator and returns
// its new secret, if any.
func putPrincipal(t *testing.T, e *testenv.Env, clientID, query string, body any) map[string]any {
	t.Helper()
	r := e.Do(http.MethodPut, principalsPath+clientID+"?api-version=2015-12-01-preview"+query, body)
	if r.Status != http.StatusOK && r.Status != http.StatusCreated {
		t.Fatalf("PUT principal %s: %d %s", clientID, r.Status, r.Body)
	}
	return r.Map()
}

func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		req, _ := http.NewRequest(http.MethodGet, e.Server.URL+"/subscriptions?api-version=2019-10-01", nil)
		req.Header.Set("Authorization", scheme+" "+e.Token)
		resp, err := e.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Authorization: %s <token>: %d, want 200", scheme, resp.StatusCode)
		}
	}
	for _, h := range []string{"Basic " + e.Token, "Bearer", "Bearer ", "Bearertoken " + e.Token} {
		req, _ := http.NewRequest(http.MethodGet, e.Server.URL+"/subscriptions?api-version=2019-10-01", nil)
		req.Header.Set("Authorization", h)
		resp, err := e.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization: %.12q...: %d, want 401", h, resp.StatusCode)
		}
	}
}

// TestTokenOfDeletedPrincipal: a token dies with its principal, and does not
// come back to life (with the new principal's rights) when a principal with
// the same client id is created again.
func TestTokenOfDeletedPrincipal(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	p := putPrincipal(t, e, "app", "", map[string]any{"role": "tenant", "subscriptions": []string{e.Sub}})
	old := token(t, e, "app", p["clientSecret"].(string))
	if old == "" {
		t.Fatal("no token for a new principal")
	}
	if r := e.DoAs(old, http.MethodGet, "/subscriptions/"+e.Sub+"/resourcegroups?api-version=2019-10-01", nil); r.Status != http.StatusOK {
		t.Fatalf("token of a live principal: %d %s", r.Status, r.Body)
	}
	if r := e.Do(http.MethodDelete, principalsPath+"app?api-version=2015-12-01-preview", nil); r.Status != http.StatusOK && r.Status != http.StatusNoContent {
		t.Fatalf("delete principal: %d %s", r.Status, r.Body)
	}
	if r := e.DoAs(old, http.MethodGet, "/subscriptions/"+e.Sub+"/resourcegroups?api-version=2019-10-01", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("token of a deleted principal: %d, want 401", r.Status)
	}
	// The same client id again, now an operator: the old token gains nothing.
	p2 := putPrincipal(t, e, "app", "", map[string]any{"role": "operator"})
	for _, path := range []string{"/subscriptions/" + e.Sub + "/resourcegroups?api-version=2019-10-01", "/providers/vmssd.Admin/principals?api-version=2015-12-01-preview"} {
		if r := e.DoAs(old, http.MethodGet, path, nil); r.Status != http.StatusUnauthorized {
			t.Errorf("old token after the client id was reused, GET %s: %d, want 401", path, r.Status)
		}
	}
	if fresh := token(t, e, "app", p2["clientSecret"].(string)); fresh == "" {
		t.Error("the new principal gets no token")
	} else if r := e.DoAs(fresh, http.MethodGet, "/providers/vmssd.Admin/principals?api-version=2015-12-01-preview", nil); r.Status != http.StatusOK {
		t.Errorf("new principal's token: %d %s", r.Status, r.Body)
	}
}

// TestRotateSecret: rotation keeps the role, subscriptions and name, ends
// the old secret and its tokens, and the server's own credential files
// follow when the rotated principal is theirs.
func TestRotateSecret(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	dir := e.Config.DataDir
	readSecret := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		s, _ := m["clientSecret"].(string)
		return s
	}
	oldSecret := readSecret("operator.json")
	opToken := token(t, e, "operator", oldSecret)
	if opToken == "" {
		t.Fatal("operator.json's secret gets no token")
	}

	// A tenant: rotation keeps its role and subscriptions.
	putPrincipal(t, e, "tenant1", "", map[string]any{"role": "tenant", "subscriptions": []string{e.Sub}, "displayName": "T1"})
	got := putPrincipal(t, e, "tenant1", "&rotateSecret=true", map[string]any{})
	if got["role"] != "tenant" || got["displayName"] != "T1" || !strings.EqualFold(strings.Join(toStrings(got["subscriptions"]), ","), e.Sub) || got["clientSecret"] == "" {
		t.Errorf("tenant after rotation: %v", got)
	}

	// The operator itself, with an empty body (what vmssctl sends for
	// --rotate-secret alone).
	got = putPrincipal(t, e, "operator", "&rotateSecret=true", map[string]any{"clientId": "operator"})
	newSecret, _ := got["clientSecret"].(string)
	if got["role"] != "operator" || newSecret == "" || newSecret == oldSecret {
		t.Fatalf("operator after rotation: %v", got)
	}
	for _, f := range []string{"operator.json", "vmssctl.json"} {
		if s := readSecret(f); s != newSecret {
			t.Errorf("%s holds %q after rotation, want the new secret", f, s)
		}
	}
	if token(t, e, "operator", oldSecret) != "" {
		t.Error("the old secret still gets tokens")
	}
	if r := e.DoAs(opToken, http.MethodGet, "/subscriptions?api-version=2019-10-01", nil); r.Status != http.StatusUnauthorized {
		t.Errorf("token of the old secret after rotation: %d, want 401", r.Status)
	}
	fresh := token(t, e, "operator", newSecret)
	if r := e.DoAs(fresh, http.MethodGet, "/providers/vmssd.Admin/principals?api-version=2015-12-01-preview", nil); r.Status != http.StatusOK {
		t.Errorf("operator with the new secret, admin API: %d %s", r.Status, r.Body)
	}
}

func toStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
