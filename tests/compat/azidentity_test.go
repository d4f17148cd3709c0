package compat

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestAzidentityClientSecret signs in like a real application on a private
// cloud: azidentity.ClientSecretCredential against vmssd's OIDC discovery and
// token endpoints (instance discovery off, as for Azure Stack), then lists
// scale sets with the token it got.
func TestAzidentityClientSecret(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	newCred := func(secret string) azcore.TokenCredential {
		cred, err := azidentity.NewClientSecretCredential("vmssd", e.Server.Client.ClientID, secret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: coreOptions(e), DisableInstanceDiscovery: true})
		if err != nil {
			t.Fatalf("NewClientSecretCredential: %v", err)
		}
		return cred
	}
	listAll := func(cred azcore.TokenCredential) (int, error) {
		c := newClients(t, e, cred, "")
		n := 0
		pg := c.sets.NewListAllPager(&armcompute.VirtualMachineScaleSetsClientListAllOptions{})
		for pg.More() {
			p, err := pg.NextPage(ctxT(t, 30*time.Second))
			if err != nil {
				return n, err
			}
			n += len(p.Value)
		}
		return n, nil
	}

	t.Run("S4/operator-secret-lists-scale-sets", func(t *testing.T) {
		e.CreateRG("rg1")
		r := e.Do(http.MethodPut, e.VMSSPath("rg1", "idle"), testenv.VMSSBody(0, "latest", "Manual"))
		if r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		n, err := listAll(newCred(e.Server.Client.ClientSecret))
		if err != nil {
			t.Fatalf("list with ClientSecretCredential: %v", err)
		}
		if n != 1 {
			t.Errorf("listed %d scale sets, want 1", n)
		}
	})
	t.Run("S4/wrong-secret-is-refused", func(t *testing.T) {
		_, err := listAll(newCred("not-the-secret"))
		var af *azidentity.AuthenticationFailedError
		if !errors.As(err, &af) {
			t.Fatalf("want *azidentity.AuthenticationFailedError, got %T %v", err, err)
		}
		if af.RawResponse == nil || af.RawResponse.StatusCode != http.StatusUnauthorized {
			t.Errorf("token endpoint answer: %v", af.RawResponse)
		}
	})
}
