package nodetest_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"

	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/nodetest"
)

// TestAuthorityRelaysByDefault: an authority started with the default
// reachability (auto, no --announce), which AutoNAT never confirms public
// on a lone machine, still serves the circuit relay v2 hop protocol from
// the start; a worker that knows it is behind NAT reserves a slot and
// reaches it through the relay; status counts the reservation.
func TestAuthorityRelaysByDefault(t *testing.T) {
	auth := nodetest.StartWith(t, func(c *node.Config) { c.Roles = []string{node.RoleAuthority} })
	if got := auth.Reachability(); got == "public" {
		t.Fatalf("authority reachability %q at start: the test needs one AutoNAT has not confirmed", got)
	}
	if st := auth.Status(); !st.Relay.On || st.Relay.Reservations != 0 {
		t.Fatalf("authority relay status at start = %+v, want on with 0 reservations", st.Relay)
	}
	w := nodetest.StartWith(t, func(c *node.Config) {
		c.Roles = []string{node.RoleWorker}
		c.Bootstrap = []string{auth.Addrs()[0].String()}
		c.NAT.Reachability = "private"
	})

	// Identify of the authority, as the worker heard it, lists the hop protocol.
	nodetest.WaitFor(t, 10*time.Second, "the worker to identify the authority", func() bool {
		ps, err := w.Host.Peerstore().GetProtocols(auth.Host.ID())
		return err == nil && slices.Contains(ps, proto.ProtoIDv2Hop)
	})
	nodetest.WaitFor(t, 15*time.Second, "the authority's status to count the worker's reservation", func() bool {
		return auth.Status().Relay.Reservations == 1
	})
	// (The worker advertises the circuit address only through a relay's
	// public addresses, so on loopback it has none: cmd/p2pnode's
	// TestRelayByDefaultProcesses declares loopback public, as the NAT lab
	// does, and checks the advertised address.)

	// The reservation works: a third peer, which knows no direct address
	// of the worker, reaches it through the relay (DCUtR may then add a
	// direct connection: that is fine).
	c := nodetest.Start(t, []string{node.RoleClient}, nil)
	circuit := auth.Addrs()[0].String() + "/p2p-circuit/p2p/" + w.Host.ID().String()
	ai, err := peer.AddrInfoFromString(circuit)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Host.Connect(ctx, *ai); err != nil {
		t.Fatalf("connect to the worker over %s: %v", circuit, err)
	}

	// The reservation ends with the worker's connection.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	nodetest.WaitFor(t, 10*time.Second, "the reservation released", func() bool {
		return auth.Status().Relay.Reservations == 0
	})
}
