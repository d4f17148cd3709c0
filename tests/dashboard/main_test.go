// Package dashboard drives vmssd's browser dashboard in a real Chromium
// (chromedp) against a real vmssd whose instances are real guest processes,
// and checks what the page shows against the ARM API.
package dashboard

import (
	"os"
	"testing"

	"github.com/vmssd/vmssd/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunGuestIfAsked()
	os.Exit(m.Run())
}
