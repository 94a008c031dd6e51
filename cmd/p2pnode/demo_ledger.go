package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// demoGrant is what the demo's authority grants each new account.
const demoGrant = 1000

// writeDemoAuthorityConfig turns the grant on for the authority of the
// demo (and of bench, with a grant to match its job count).
func writeDemoAuthorityConfig(dir string, grant uint64) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cfg := fmt.Sprintf("roles: [authority]\nauthority:\n  grant:\n    amount: %d\n", grant)
	return os.WriteFile(filepath.Join(dir, node.ConfigFile), []byte(cfg), 0o600)
}

// demoLedger waits until the workers have been paid, fetches every chain
// from the authority, audits them and prints the balance table.
func demoLedger(ctx context.Context, out io.Writer, n *node.Node, authority peer.ID) error {
	cands, err := n.DiscoverWorkers(ctx, "wasm")
	if err != nil && len(cands) == 0 {
		return err
	}
	accounts := []peer.ID{n.ID()}
	for _, c := range cands {
		accounts = append(accounts, c.ID)
	}
	var rep ledger.AuditReport
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The accounts first, the authority last: a worker settling in the
		// meantime claims a release the authority made before we read its
		// chain, so every claim we read has its out-block in the set.
		chains := map[peer.ID][]*pb.Block{}
		for _, id := range accounts {
			if c, err := n.FetchChain(ctx, authority, id); err == nil {
				chains[id] = c
			}
		}
		own, err := n.FetchChain(ctx, authority, authority)
		if err != nil {
			return fmt.Errorf("ledger: %w", err)
		}
		chains[authority] = own
		rep, err = ledger.Audit(chains, ledger.NewTrustSet(authority))
		// A claim of an out-block we did not read is a snapshot taken
		// mid-settlement, not a bad chain: read again, up to the deadline.
		if err != nil && (!errors.Is(err, ledger.ErrUnknownSource) || time.Now().After(deadline)) {
			return fmt.Errorf("ledger verify: %w", err)
		}
		if err == nil && (rep.Escrow == 0 && rep.InFlight == 0 || time.Now().After(deadline)) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(out, "\npoints")
	fmt.Fprintln(tw, "account\trole\tgranted\tspent\tearned\tbalance\t")
	short := func(id peer.ID) string { s := id.String(); return "…" + s[len(s)-8:] }
	for i, id := range accounts {
		s := rep.Summaries[id]
		role, spent, earned := "worker", uint64(0), uint64(0)
		if i == 0 {
			role = "client"
		}
		// Granted and earned are both transfers in; the grant is the first.
		granted := min(s.In, demoGrant)
		earned = s.In - granted
		spent = s.Locked - s.Refunded
		if role == "client" {
			spent = s.Locked
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t\n", short(id), role, granted, spent, earned, s.Balance)
	}
	tw.Flush()
	fmt.Fprintf(out, "minted %d, open escrow %d, in flight %d\n", rep.Minted, rep.Escrow, rep.InFlight)
	if !rep.Conserved() {
		return fmt.Errorf("ledger: %w", ledger.ErrNotConserved)
	}
	fmt.Fprintf(out, "ledger verified: %d blocks, conserved\n", rep.Blocks)
	return nil
}
