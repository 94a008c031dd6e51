package nodetest_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/nodetest"
	"github.com/p2pjobs/p2pnode/node/schedule"
)

// TestReputationPrefersReliableWorker: a worker that vanished after bidding
// goes on the client's record (saved in a file); after both workers and
// the client restart, a series with the reputation strategy goes to the
// worker that delivered, although the two bid alike.
func TestReputationPrefersReliableWorker(t *testing.T) {
	auth := nodetest.Start(t, []string{node.RoleAuthority}, nil)
	a := []string{nodetest.Addr(auth)}
	worker := func(key crypto.PrivKey) *node.Node {
		return nodetest.StartKeyed(t, key, func(c *node.Config) { c.Roles = []string{node.RoleWorker}; c.Bootstrap = a })
	}
	keyOf := func() crypto.PrivKey {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	kGood, kBad := keyOf(), keyOf()
	good, bad := worker(kGood), worker(kBad)
	goodID, badID := good.Host.ID(), bad.Host.ID()
	path := filepath.Join(t.TempDir(), client.ReputationFile)
	withRecord := func() node.Option {
		r, err := client.OpenReputation(path)
		if err != nil {
			t.Fatal(err)
		}
		return node.WithClientOptions(client.WithReputation(r))
	}
	nodetest.WaitFor(t, 10*time.Second, "registrations", func() bool { return auth.Authority.Workers() == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Session 1: the bad worker bids, then vanishes before its jobs reach it.
	cl := nodetest.Start(t, []string{node.RoleClient}, a, withRecord())
	rep, err := cl.Client.Run(ctx, trivialJobs("first", 4), client.Hooks{OnBids: func(_ []client.Candidate, offers []client.Offer, _ []client.Decline) {
		if len(offers) != 2 {
			t.Errorf("%d offers, want both workers'", len(offers))
		}
		_ = bad.Close()
	}})
	if err != nil || rep.Failed() != 0 {
		t.Fatalf("first series: %v (%d failed)", err, rep.Failed())
	}
	r1 := cl.Client.Reputation()
	if r1.Record(badID).Failed < 1 || r1.Record(goodID).Done != 4 {
		t.Fatalf("record after the first series: good %+v, bad %+v", r1.Record(goodID), r1.Record(badID))
	}
	_ = cl.Close()

	// Session 2: everyone restarts (so neither worker has a measured job
	// time and their bids match); the client reloads its record.
	_ = good.Close()
	good, bad = worker(kGood), worker(kBad)
	nodetest.WaitFor(t, 10*time.Second, "both workers registered again", func() bool {
		return auth.Authority.Workers() == 2 && good.Worker != nil && bad.Worker != nil
	})
	cl = nodetest.Start(t, []string{node.RoleClient}, a, withRecord())
	if g, b := cl.Client.Reputation().Score(goodID), cl.Client.Reputation().Score(badID); !(g > 0.5 && b < 0.5) {
		t.Fatalf("reloaded scores good %v, bad %v", g, b)
	}
	s := trivialJobs("second", 2) // one round on either worker (2 slots each)
	s.Strategy = schedule.Reputation
	var offers []client.Offer
	rep, err = cl.Client.Run(ctx, s, client.Hooks{OnBids: func(_ []client.Candidate, o []client.Offer, _ []client.Decline) { offers = o }})
	if err != nil || rep.Failed() != 0 {
		t.Fatalf("second series: %v", err)
	}
	if len(offers) != 2 {
		t.Fatalf("%d offers in the second series, want both workers'", len(offers))
	}
	by := map[peer.ID]int{}
	for _, o := range rep.Outcomes {
		by[o.Worker]++
	}
	if by[goodID] != 2 {
		t.Fatalf("jobs by worker %v: want both on the reliable worker %s", by, goodID)
	}
}
