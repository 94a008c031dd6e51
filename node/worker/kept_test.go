package worker

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// countingExecutor counts the jobs it runs.
type countingExecutor struct {
	bigExecutor
	runs atomic.Int32
}

func (e *countingExecutor) Run(ctx context.Context, j exec.Job) (exec.Result, error) {
	e.runs.Add(1)
	return exec.Result{Stdout: []byte(j.Args[0]), Duration: time.Millisecond}, nil
}

// TestKeptResultCollected: a client that sends a job it was already sent
// the result of (a resumed client whose first run crashed) gets the kept
// result and its original receipt, without running the job again or a
// second receipt to be paid; the same job ID with other content runs.
func TestKeptResultCollected(t *testing.T) {
	pay := &payee{}
	e := &countingExecutor{}
	s, ch := pair(t, e, WithPayee(pay))
	sb, err := s.MakeBid(ch.ID(), &pb.BidRequest{SeriesId: "s", JobCount: 3, Executor: "wasm"})
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := protocols.VerifyBid(sb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	send := func(arg string, seq uint64) *pb.JobResult {
		t.Helper()
		st, err := ch.NewStream(ctx, s.h.ID(), protocols.Job)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_ = st.SetDeadline(time.Now().Add(10 * time.Second))
		if err := protocols.NewWriter(st, protocols.MaxJobMsg).Write(&pb.JobStreamMsg{Msg: &pb.JobStreamMsg_Job{Job: &pb.JobRequest{
			Seq: seq, SeriesId: "s", JobId: "j", Executor: "wasm", ModuleHash: make([]byte, 32), Args: []string{arg},
			BidId: b.BidId, Price: b.PricePerJob}}}); err != nil {
			t.Fatal(err)
		}
		_ = st.CloseWrite()
		var m pb.JobStreamReply
		if err := protocols.NewReader(st, protocols.MaxJobMsg).Read(&m); err != nil {
			t.Fatal(err)
		}
		if m.GetResult() == nil || m.GetResult().Error != nil {
			t.Fatalf("reply %v", &m)
		}
		return m.GetResult()
	}
	first := send("a", 1)
	again := send("a", 7)
	other := send("b", 8)
	if n := e.runs.Load(); n != 2 {
		t.Fatalf("%d runs, want 2 (the repeated job collected, not run)", n)
	}
	if again.Seq != 7 || !bytes.Equal(again.Receipt.Receipt, first.Receipt.Receipt) || string(again.Stdout) != "a" {
		t.Fatalf("collected result: seq %d, same receipt %v, stdout %q", again.Seq, bytes.Equal(again.Receipt.Receipt, first.Receipt.Receipt), again.Stdout)
	}
	if string(other.Stdout) != "b" {
		t.Fatalf("other content got %q", other.Stdout)
	}
	pay.mu.Lock()
	defer pay.mu.Unlock()
	if pay.receipts != 2 {
		t.Fatalf("%d receipts to be paid, want 2", pay.receipts)
	}
}
