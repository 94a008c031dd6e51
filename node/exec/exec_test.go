//go:build unix

package exec

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

func newTestExec(t *testing.T) *Exec {
	t.Helper()
	allow := map[string]string{}
	for name, p := range map[string]string{"env": "/usr/bin/env", "cat": "/bin/cat", "sleep": "/bin/sleep", "cp": "/bin/cp"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not available", p)
		}
		allow[name] = p
	}
	e, err := NewExec(allow)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestExecEnvScrubbed(t *testing.T) {
	e := newTestExec(t)
	t.Setenv("P2PNODE_SECRET", "leak")
	res, err := e.Run(context.Background(), Job{Args: []string{"env"}, Env: map[string]string{"A": "1"}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("res %+v err %v", res, err)
	}
	got := strings.Fields(string(res.Stdout))
	slices.Sort(got)
	if !slices.Equal(got, []string{"A=1", "PATH=/usr/bin:/bin"}) {
		t.Fatalf("env %q", got)
	}
}

func TestExecInputsOutputs(t *testing.T) {
	e := newTestExec(t)
	ctx := context.Background()
	res, err := e.Run(ctx, Job{
		Args:    []string{"cp", "in/a.txt", "out.txt"},
		Inputs:  []File{{Name: "in/a.txt", Data: []byte("hello")}},
		Outputs: []string{"out.txt"},
	})
	if err != nil || len(res.Outputs) != 1 || string(res.Outputs[0].Data) != "hello" {
		t.Fatalf("res %+v err %v", res, err)
	}
	res, err = e.Run(ctx, Job{Args: []string{"cat"}, Stdin: []byte("piped")})
	if err != nil || string(res.Stdout) != "piped" {
		t.Fatalf("res %+v err %v", res, err)
	}
	res, err = e.Run(ctx, Job{Args: []string{"cat", "nope"}})
	if err != nil || res.ExitCode == 0 || len(res.Stderr) == 0 {
		t.Fatalf("res %+v err %v", res, err)
	}
	// Exit 0 without a declared output: the job is broken.
	_, err = e.Run(ctx, Job{Args: []string{"cat"}, Outputs: []string{"missing"}})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_JOB_OUTPUT_MISSING)) {
		t.Fatalf("err %v", err)
	}
	// Non-zero exit without it: the exit code is the news, not the output.
	res, err = e.Run(ctx, Job{Args: []string{"cat", "x"}, Outputs: []string{"missing"}})
	if err != nil || res.ExitCode == 0 {
		t.Fatalf("res %+v err %v, want a non-zero exit and no error", res, err)
	}
	_, err = e.Run(ctx, Job{Args: []string{"cat"}, Inputs: []File{{Name: "../x"}}})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_BAD_REQUEST)) {
		t.Fatalf("err %v", err)
	}
}

func TestExecTimeout(t *testing.T) {
	e := newTestExec(t)
	start := time.Now()
	_, err := e.Run(context.Background(), Job{Args: []string{"sleep", "30"}, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_JOB_TIMEOUT)) {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestExecOutputCap(t *testing.T) {
	e := newTestExec(t)
	_, err := e.Run(context.Background(), Job{Args: []string{"cat", "/dev/zero"}, MaxOutputBytes: 1 << 16})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_JOB_OUTPUT_TOO_LARGE)) {
		t.Fatalf("err %v", err)
	}
}

func TestExecUnknownProgram(t *testing.T) {
	e := newTestExec(t)
	_, err := e.Run(context.Background(), Job{Args: []string{"rm", "-rf", "/"}})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_EXECUTOR_MISSING)) {
		t.Fatalf("err %v", err)
	}
	if _, err := NewExec(map[string]string{"x": "relative/path"}); err == nil {
		t.Fatal("relative path accepted")
	}
}

// TestExecUndeclaredOutput: a native program that leaves a file it did not
// declare fails with the message the WASM executor gives: the file's name
// and the outputs: key.
func TestExecUndeclaredOutput(t *testing.T) {
	e := newTestExec(t)
	_, err := e.Run(context.Background(), Job{
		Args:    []string{"cp", "a.txt", "stray.txt"},
		Inputs:  []File{{Name: "a.txt", Data: []byte("x")}},
		Outputs: []string{"out.txt"},
	})
	if !errors.Is(err, protocols.Code(pb.ErrorCode_BAD_REQUEST)) || !strings.Contains(err.Error(), `"stray.txt"`) ||
		!strings.Contains(err.Error(), "outputs:") {
		t.Fatalf("err %v, want one naming stray.txt and outputs:", err)
	}
}
