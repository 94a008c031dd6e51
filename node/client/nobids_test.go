package client

import (
	"strings"
	"testing"
)

// TestNoBidsErrorNamesTheExecutor: the authorities answer discovery with
// the workers that run the series' executor only, so an exec series on a
// network of wasm workers finds nobody. The message must say which
// executor nobody offers and how a worker offers it, not only suggest
// that the authority is unreachable or nobody registered.
func TestNoBidsErrorNamesTheExecutor(t *testing.T) {
	msg := (&NoBidsError{Executor: "exec"}).Error()
	for _, want := range []string{"no workers found", `executor "exec"`, "worker.executors"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	// The default executor: every worker runs it, so the old hints hold.
	if msg := (&NoBidsError{Executor: "wasm"}).Error(); strings.Contains(msg, "worker.executors") ||
		!strings.Contains(msg, "is any worker registered") {
		t.Errorf("wasm: %q", msg)
	}
}
