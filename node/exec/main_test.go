package exec

import (
	"os"
	"testing"
)

// TestMain lets the test binary serve as the exec jail (the p2pnode binary
// does the same in main), so the tests run real jailed processes.
func TestMain(m *testing.M) {
	MaybeRunJail()
	os.Exit(m.Run())
}
