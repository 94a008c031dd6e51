package nodetest_test

import (
	"testing"
	"time"

	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/nodetest"
	"github.com/p2pjobs/p2pnode/protocols"
)

// TestWorkerCloseWithIdleJobStream: a client holding a job stream open
// without sending (a series waiting for its next job, or a peer that just
// sits there) must not keep the worker from shutting down for the job
// stream's two-minute idle timeout.
func TestWorkerCloseWithIdleJobStream(t *testing.T) {
	w := nodetest.Start(t, []string{node.RoleWorker}, nil)
	cl := nodetest.Start(t, []string{node.RoleClient}, nil)
	s := rawStream(t, cl, w, protocols.Job)
	if _, err := s.Write(nil); err != nil { // the worker's handler starts on first contact
		t.Fatal(err)
	}
	_ = s.SetDeadline(time.Now().Add(time.Minute))
	// The worker's side of the stream exists once its handler runs.
	nodetest.WaitFor(t, 5*time.Second, "the worker's job handler", func() bool {
		for _, c := range w.Host.Network().ConnsToPeer(cl.Host.ID()) {
			for _, st := range c.GetStreams() {
				if st.Protocol() == protocols.Job {
					return true
				}
			}
		}
		return false
	})
	done := make(chan error, 1)
	go func() { done <- w.Worker.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("worker.Close blocked by an idle job stream")
	}
}
