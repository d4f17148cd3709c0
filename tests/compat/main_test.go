// Package compat drives a real, in-process vmssd with the official Azure SDK
// for Go (armcompute v8, armresources, azidentity), once at the SDK's own
// Microsoft.Compute api-version and once pinned to 2020-06-01, the version
// of the Azure Stack 2020-09-01-hybrid profile.
package compat

import (
	"os"
	"testing"

	"github.com/vmssd/vmssd/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunGuestIfAsked()
	os.Exit(m.Run())
}
