package worker

import (
	"os"
	"testing"

	"github.com/p2pjobs/p2pnode/node/exec"
)

// TestMain lets the test binary serve as the exec jail, as the p2pnode
// binary does, so the hostile suite runs real jailed processes.
func TestMain(m *testing.M) {
	exec.MaybeRunJail()
	os.Exit(m.Run())
}
