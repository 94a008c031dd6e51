package main

import (
	"os/exec"
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

// TestCrashPointOnlyInTestBuilds: the crash point the ledger crash tests
// arm through the environment is not part of a release build.
func TestCrashPointOnlyInTestBuilds(t *testing.T) {
	files := func(tags ...string) string {
		args := append([]string{"list"}, tags...)
		out, err := exec.Command("go", append(args, "-f", "{{.GoFiles}}", ".")...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		return string(out)
	}
	if release := files(); strings.Contains(release, "crashpoint.go") || !strings.Contains(release, "crashpoint_off.go") {
		t.Fatalf("release build files: %s", release)
	}
	if test := files("-tags", "p2pnode_testhooks"); !strings.Contains(test, "crashpoint.go") {
		t.Fatalf("test build files: %s", test)
	}
}
