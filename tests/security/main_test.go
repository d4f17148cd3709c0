// Package security attacks a real, in-process vmssd: tenant isolation (S4),
// hostile and malformed input, and a fuzz test of the scale set PUT body.
package security

import (
	"os"
	"testing"

	"github.com/vmssd/vmssd/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunGuestIfAsked()
	os.Exit(m.Run())
}
