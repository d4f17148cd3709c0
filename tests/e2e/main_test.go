// Package e2e drives a real vmssd (in process) whose instances are real
// guest processes, through its ARM REST API.
package e2e

import (
	"os"
	"testing"

	"github.com/vmssd/vmssd/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunGuestIfAsked()
	os.Exit(m.Run())
}
