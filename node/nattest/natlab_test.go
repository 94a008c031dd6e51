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

// TestNATLab builds p2pnode and the WAN emulator and runs
// scripts/natlab.sh twice: the whole NAT grid (none, full cone,
// address-restricted, port-restricted, symmetric, hairpin on and off), then
// the same with 40 ms delay and 1% loss on every WAN link (--impair). The
// script asserts every pair against what its NATs allow: direct within 5 s
// of first contact with its jobs run direct, or relayed with its series
// complete.
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
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		missing = append(missing, "/dev/net/tun")
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
	dir := t.TempDir()
	bin, wanem := filepath.Join(dir, "p2pnode"), filepath.Join(dir, "wanem")

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	for out, pkg := range map[string]string{bin: "./cmd/p2pnode", wanem: "./node/nattest/wanem"} {
		build := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		build.Dir = root
		if b, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	for _, run := range []struct {
		name string
		args []string
	}{
		{"grid", []string{"--bench"}},
		{"impaired", []string{"--impair"}},
	} {
		t.Run(run.name, func(t *testing.T) {
			lab := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "scripts", "natlab.sh")}, run.args...)...)
			lab.Dir = root
			lab.Env = append(os.Environ(), "P2PNODE_BIN="+bin, "NATLAB_WANEM="+wanem)
			// On timeout, SIGTERM lets the script's trap tear the lab down.
			lab.Cancel = func() error { return lab.Process.Signal(syscall.SIGTERM) }
			lab.WaitDelay = 15 * time.Second
			// If this test binary dies instead (go test's own timeout kills
			// it), the kernel sends the script SIGTERM, so its trap still
			// tears the namespaces and the nodes down.
			lab.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
			var out bytes.Buffer
			lab.Stdout, lab.Stderr = &out, &out
			start := time.Now()
			err := lab.Run()
			t.Logf("scripts/natlab.sh %s (%v):\n%s", strings.Join(run.args, " "), time.Since(start).Round(time.Millisecond), out.String())
			if err != nil {
				t.Fatalf("NAT lab failed: %v", err)
			}
			if !strings.Contains(out.String(), "natlab: PASS") {
				t.Fatal("NAT lab did not report PASS")
			}
		})
	}
}
