package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/node/runner"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// The methods the commands (cmd/p2pnode) call: a command asks the node,
// it does not reach into the node's services.

// Errors of a command asked of a node without the role it needs.
var (
	ErrNotClient    = errors.New("node: this node does not have the client role")
	ErrNotAuthority = errors.New("node: this node is not an authority: only an authority mints")
)

// ID is the node's peer ID.
func (n *Node) ID() peer.ID { return n.Host.ID() }

// RunSeries runs the series file of req on the node's client (the one path
// for `submit`, the demo and the local API), emitting its messages and
// recording them for the live view.
func (n *Node) RunSeries(ctx context.Context, req runner.SubmitRequest, builtins map[string][]byte, emit func(runner.Message)) (*client.Report, error) {
	if n.Client == nil {
		return nil, ErrNotClient
	}
	return runner.RunSpec(ctx, n.Client, req, builtins, func(m runner.Message) {
		n.ObserveSeries(m)
		emit(m)
	})
}

// DiscoverWorkers asks the node's authorities (then the DHT) for workers
// with executor.
func (n *Node) DiscoverWorkers(ctx context.Context, executor string) ([]client.Candidate, error) {
	if n.Client == nil {
		return nil, ErrNotClient
	}
	return n.Client.Discover(ctx, client.Filter{Executor: executor})
}

// WaitWorkers waits until at least want workers with executor are
// registered, for at most d.
func (n *Node) WaitWorkers(ctx context.Context, executor string, want int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		cands, err := n.DiscoverWorkers(ctx, executor)
		if errors.Is(err, ErrNotClient) || len(cands) >= want {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d workers registered after %v (last error: %v)", len(cands), want, d, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LedgerHome is the node's account's home authority; "" without an account.
func (n *Node) LedgerHome() peer.ID {
	if n.Account == nil {
		return ""
	}
	return n.Account.Home()
}

// FetchChain fetches account's chain from authority over the network.
func (n *Node) FetchChain(ctx context.Context, authority, account peer.ID) ([]*pb.Block, error) {
	return ledgersvc.FetchChain(ctx, n.Host, authority, account, 0)
}

// AccountState is the node's own chain state; a worker or client first
// claims what was minted or released to it.
func (n *Node) AccountState(ctx context.Context) (ledger.ChainState, error) {
	if n.Account != nil {
		_, err := n.Account.Balance(ctx)
		return n.Account.State(), err
	}
	if n.ledgerStore == nil {
		return ledger.ChainState{}, errors.New("node: no ledger")
	}
	return n.ledgerStore.State(n.Host.ID())
}

// OwnChain is the node's own chain.
func (n *Node) OwnChain() ([]*pb.Block, error) {
	if n.Account != nil {
		return n.Account.Chain(), nil
	}
	if n.ledgerStore == nil {
		return nil, errors.New("node: no ledger")
	}
	return n.ledgerStore.Chain(n.Host.ID(), 0, 0)
}

// Mint creates amount points for to (authority only) and returns the
// block that credits them.
func (n *Node) Mint(ctx context.Context, to peer.ID, amount uint64, ref string) (*pb.Block, error) {
	if n.Ledger == nil {
		return nil, ErrNotAuthority
	}
	resp := n.Ledger.Do(ctx, &pb.LedgerRequest{Req: &pb.LedgerRequest_Mint{Mint: &pb.MintRequest{To: []byte(to), Amount: amount, Reference: ref}}}, n.Host.ID())
	if resp.Error != nil {
		return nil, errors.New(resp.Error.Message)
	}
	if len(resp.Blocks) == 0 {
		return nil, errors.New("node: mint: no block in the reply")
	}
	return resp.Blocks[len(resp.Blocks)-1], nil
}
