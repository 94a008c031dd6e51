// Package nattest runs the NAT lab (scripts/natlab.sh) as a Go test: real
// p2pnode processes in network namespaces behind nftables NATs. Test code
// only; it needs root, ip (iproute2) and nft (nftables).
package nattest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestNATLab builds p2pnode and runs scripts/natlab.sh, which asserts that
// workers register through their NATs, the client's series completes, and
// client<->worker connections end up direct through cone NATs (hole
// punched) and relayed through a symmetric one.
func TestNATLab(t *testing.T) {
	if testing.Short() {
		t.Skip("NAT lab skipped in -short mode")
	}
	ci := os.Getenv("CI") == "true"
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if runtime.GOOS != "linux" {
		missing = append(missing, "linux")
	}
	if len(missing) > 0 {
		msg := "NAT lab needs " + strings.Join(missing, ", ") +
			"; run it with: sudo go test ./node/nattest/ (apt-get install iproute2 nftables), or sudo scripts/natlab.sh"
		if ci {
			t.Fatal(msg + " (CI=true: the NAT lab must run in CI)")
		}
		t.Skip(msg)
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(t.TempDir(), "p2pnode")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/p2pnode")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	lab := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "natlab.sh"), "--bench")
	lab.Dir = root
	lab.Env = append(os.Environ(), "P2PNODE_BIN="+bin)
	// On timeout, SIGTERM lets the script's trap tear the lab down.
	lab.Cancel = func() error { return lab.Process.Signal(syscall.SIGTERM) }
	lab.WaitDelay = 15 * time.Second
	// If this test binary dies instead (go test's own timeout kills it),
	// the kernel sends the script SIGTERM, so its trap still tears the
	// namespaces and the nodes down rather than leaving them orphaned.
	lab.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	var out bytes.Buffer
	lab.Stdout, lab.Stderr = &out, &out
	start := time.Now()
	err := lab.Run()
	t.Logf("scripts/natlab.sh (%v):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("NAT lab failed: %v", err)
	}
	if !strings.Contains(out.String(), "natlab: PASS") {
		t.Fatal("NAT lab did not report PASS")
	}
}
