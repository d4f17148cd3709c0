package dashboard

import (
	"encoding/json"
	"testing"

	"github.com/vmssd/vmssd/internal/deploy"
)

func identity(id string) deploy.Identity { return deploy.Identity{ClientID: id, UID: "u-" + id} }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
