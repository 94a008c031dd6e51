package main

import (
	"strings"
	"testing"
)

// testRevision is what the test binary is linked with (e2e_test.go binary).
const testRevision = "0123456789ab-test"

// TestVersionShowsRevision: --version names the source revision the
// binary was built from, so an operator can tell which code a node runs.
func TestVersionShowsRevision(t *testing.T) {
	out, code := p2pnode(t, "--version")
	if code != 0 || !strings.Contains(out, "(rev "+testRevision+")") {
		t.Fatalf("p2pnode --version: exit %d, %q; want the revision %s", code, out, testRevision)
	}
}
