package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/p2pjobs/p2pnode/node/runner"
)

// TestSummaryPrintsEachFailureInFull: the job table cuts long results to
// fit, but a failure's reason is what the user acts on (the undeclared
// output message ends with the outputs: fix), so the README's "each
// failure's reason is printed" holds: in full, once per failed job, under
// the table.
func TestSummaryPrintsEachFailureInFull(t *testing.T) {
	long := `p2pjobs: bad request: exec: the job wrote "measurements.csv.gz", a file its series does not declare: add it to the series' outputs: (outputs: [measurements.csv.gz])`
	var out bytes.Buffer
	v := newSeriesView(&out, false)
	v.lines = []runner.SummaryLine{
		{Job: "job-1", Status: "failed", Error: long},
		{Job: "job-2", Status: "done", Stdout: "ok"},
	}
	v.done = &runner.Done{Results: "/tmp/x"}
	if got := v.summary(); got != 1 {
		t.Fatalf("failed = %d, want 1", got)
	}
	if !strings.Contains(out.String(), "job-1: "+long) {
		t.Fatalf("the failure's reason is not printed in full:\n%s", out.String())
	}
	if strings.Contains(out.String(), "job-2: ") {
		t.Fatalf("a job that succeeded is listed as failed:\n%s", out.String())
	}
}
