package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/spf13/cobra"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/ledger/boltstore"
	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/api"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

func init() { register(newLedgerCmd) }

type ledgerOptions struct {
	Output string
	Trust  []string
	To     string
	Amount uint64
	Ref    string
}

func newLedgerCmd(g *globalOptions) *cobra.Command {
	var o ledgerOptions
	cmd := &cobra.Command{
		Use:   "ledger",
		Short: "Inspect, verify, export the points ledger; mint points on an authority",
		Long: `ledger reads the points ledger of the data directory (<data-dir>/ledger.db).
When a node runs on the data directory, balance, history, export and mint go
through its local API (<data-dir>/api.sock); otherwise they open the store
directly (verify of a data directory too).

verify checks every signature, hash link and countersignature of every
chain and the conservation of points (minted = balances + open escrow + in
flight); it exits 1 naming the first bad block.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use: "balance", Short: "The node's balance", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runLedgerBalance(c.Context(), g, c.OutOrStdout()) },
	})
	cmd.AddCommand(&cobra.Command{
		Use: "history", Short: "The node's blocks (--json for JSON lines)", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runLedgerHistory(c.Context(), g, c.OutOrStdout()) },
	})
	verify := &cobra.Command{
		Use: "verify [FILE|DIR]", Short: "Verify an export file or a data directory offline", Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			src := g.DataDir
			if len(args) == 1 {
				src = args[0]
			}
			return runLedgerVerify(src, o.Trust, g.JSON, c.OutOrStdout())
		},
	}
	verify.Flags().StringSliceVar(&o.Trust, "trust", nil, "authority peer IDs to trust (default: the authorities whose chains are in the set)")
	cmd.AddCommand(verify)
	export := &cobra.Command{
		Use: "export", Short: "Write every chain in the store as a portable file others can verify", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runLedgerExport(c.Context(), g, o.Output, c.OutOrStdout())
		},
	}
	export.Flags().StringVarP(&o.Output, "output", "o", "", "file (default stdout)")
	cmd.AddCommand(export)
	mint := &cobra.Command{
		Use: "mint --to PEER --amount N", Short: "Authority: create points for an account", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runLedgerMint(c.Context(), g, &o, c.OutOrStdout()) },
	}
	mint.Flags().StringVar(&o.To, "to", "", "receiving account (peer ID)")
	mint.Flags().Uint64Var(&o.Amount, "amount", 0, "points")
	mint.Flags().StringVar(&o.Ref, "reference", "mint", "reference recorded in the block")
	cmd.AddCommand(mint)
	handover := &cobra.Command{
		Use: "handover --to AUTHORITY", Short: "Move this node's account to another home authority", Args: cobra.NoArgs,
		Long: `handover moves the node's account to the authority --to (a peer ID among the
node's --bootstrap authorities). The node signs a HANDOVER block naming it;
the current home countersigns it and serves the account no more; the new
home verifies the whole chain and countersigns from then on. The chain
records the new home, so it stays the home across restarts whatever
ledger.home says (ledger.home only picks the home of a new account).

The current home refuses while the account has escrow open (awards not yet
paid or refunded): wait for the series to settle, then hand over.

It needs the running node (it talks to both authorities on the node's
identity and owns its store): a stopped node cannot hand over.`,
		RunE: func(c *cobra.Command, _ []string) error {
			return runLedgerHandover(c.Context(), g, o.To, c.OutOrStdout())
		},
	}
	handover.Flags().StringVar(&o.To, "to", "", "the new home authority (peer ID)")
	cmd.AddCommand(handover)
	return cmd
}

// runLedgerHandover asks the running node to move its account's home.
func runLedgerHandover(ctx context.Context, g *globalOptions, to string, out io.Writer) error {
	id, err := peer.Decode(to)
	if err != nil {
		return usagef("want --to <authority peer ID>")
	}
	sock := filepath.Join(g.DataDir, node.SocketFile)
	if !api.Alive(sock) {
		return fmt.Errorf("ledger handover: no node runs on %s: start it (the old home must countersign the hand-over over the network, the new home must take the chain)", g.DataDir)
	}
	r, err := api.Handover(ctx, sock, api.HandoverRequest{To: id.String()})
	if err != nil {
		return fmt.Errorf("ledger handover: %w", err)
	}
	if g.JSON {
		return json.NewEncoder(out).Encode(r)
	}
	fmt.Fprintf(out, "handed over at block #%d: home %s (was %s)\n", r.Seq, r.To, r.From)
	return nil
}

// openLedgerStore opens <dir>/ledger.db (dir: a data directory) or a
// ledger.db path.
func openLedgerStore(path string, trust ...peer.ID) (*boltstore.Store, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, node.LedgerFile)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, usageError{fmt.Errorf("no ledger at %s: %w", path, err)}
	}
	s, err := boltstore.Open(path, ledger.NewTrustSet(trust...))
	if err != nil {
		return nil, fmt.Errorf("open %s (is a node running on it? stop it first): %w", path, err)
	}
	return s, nil
}

func selfID(g *globalOptions) (peer.ID, error) {
	key, err := node.LoadOrCreateIdentity(filepath.Join(g.DataDir, node.IdentityFile))
	if err != nil {
		return "", err
	}
	return peer.IDFromPrivateKey(key)
}

func runLedgerBalance(ctx context.Context, g *globalOptions, out io.Writer) error {
	var bi api.BalanceInfo
	if sock := filepath.Join(g.DataDir, node.SocketFile); api.Alive(sock) {
		var err error
		if bi, err = api.GetBalance(ctx, sock); err != nil {
			return err
		}
	} else {
		id, err := selfID(g)
		if err != nil {
			return err
		}
		s, err := openLedgerStore(g.DataDir)
		if err != nil {
			return err
		}
		defer s.Close()
		st, err := s.State(id)
		if errors.Is(err, ledger.ErrNotFound) {
			return fmt.Errorf("no account for %s yet (the node opens it at its home authority when it starts)", id)
		}
		if err != nil {
			return err
		}
		bi = api.BalanceInfo{Account: id.String(), Balance: st.Balance, Home: st.Home.String(), Blocks: st.Blocks}
	}
	if g.JSON {
		return json.NewEncoder(out).Encode(bi)
	}
	fmt.Fprintf(out, "%s: %d points (%d blocks, home %s)\n", bi.Account, bi.Balance, bi.Blocks, bi.Home)
	return nil
}

// HistoryLine is one block of `ledger history --json`.
type HistoryLine struct {
	Seq          uint64    `json:"seq"`
	Kind         string    `json:"kind"`
	Amount       uint64    `json:"amount"`
	Counterparty string    `json:"counterparty,omitempty"`
	Reference    string    `json:"reference,omitempty"`
	Time         time.Time `json:"time"`
	Balance      uint64    `json:"balance"`
	Notary       string    `json:"notary,omitempty"`
}

func runLedgerHistory(ctx context.Context, g *globalOptions, out io.Writer) error {
	var chain []*pb.Block
	if sock := filepath.Join(g.DataDir, node.SocketFile); api.Alive(sock) {
		var err error
		if chain, err = api.GetHistory(ctx, sock); err != nil {
			return err
		}
	} else {
		id, err := selfID(g)
		if err != nil {
			return err
		}
		s, err := openLedgerStore(g.DataDir)
		if err != nil {
			return err
		}
		defer s.Close()
		if chain, err = s.Chain(id, 0, 0); err != nil {
			return err
		}
	}
	var st ledger.ChainState
	refs := ledger.MapRefs{}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	if !g.JSON {
		fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tAMOUNT\tBALANCE\tCOUNTERPARTY\tREFERENCE")
	}
	for _, b := range chain {
		if err := st.Apply(b, ledger.NewTrustSet(peer.ID(b.Notary), peer.ID(b.Account), st.Home), refs); err != nil {
			return fmt.Errorf("block %d: %w", b.Seq, err)
		}
		l := HistoryLine{Seq: b.Seq, Kind: ledgersvc.KindName(b.Kind), Amount: b.Amount, Reference: b.Reference,
			Time: time.UnixMilli(b.TimestampMs).UTC(), Balance: st.Balance}
		if len(b.Counterparty) > 0 {
			l.Counterparty = peer.ID(b.Counterparty).String()
		}
		if len(b.Notary) > 0 {
			l.Notary = peer.ID(b.Notary).String()
		}
		if g.JSON {
			if err := json.NewEncoder(out).Encode(l); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", l.Seq, l.Time.Format(time.RFC3339), l.Kind, l.Amount, l.Balance, l.Counterparty, l.Reference)
	}
	return tw.Flush()
}

// loadChains reads every chain of an export file or a data directory.
func loadChains(src string) (map[peer.ID][]*pb.Block, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, usageError{err}
	}
	if sock := filepath.Join(src, node.SocketFile); fi.IsDir() && api.Alive(sock) {
		blocks, err := api.GetExport(context.Background(), sock) // a node runs on it
		if err != nil {
			return nil, err
		}
		return ledger.GroupChains(blocks), nil
	}
	if fi.IsDir() || filepath.Ext(src) == ".db" {
		s, err := openLedgerStore(src)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		return storeChains(s)
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, usageError{err}
	}
	defer f.Close()
	blocks, err := ledger.Import(f)
	if err != nil {
		return nil, err
	}
	return ledger.GroupChains(blocks), nil
}

func storeChains(s ledger.Store) (map[peer.ID][]*pb.Block, error) {
	ids, err := s.Accounts()
	if err != nil {
		return nil, err
	}
	chains := map[peer.ID][]*pb.Block{}
	for _, id := range ids {
		if chains[id], err = s.Chain(id, 0, 0); err != nil {
			return nil, err
		}
	}
	return chains, nil
}

// VerifyResult is what ledger verify prints (ledger.SetReport and the
// time it took).
type VerifyResult struct {
	ledger.SetReport
	Elapsed time.Duration `json:"elapsed_ns"`
}

// verifyChains times ledger.VerifySet.
func verifyChains(chains map[peer.ID][]*pb.Block, trustIDs []peer.ID) (VerifyResult, error) {
	start := time.Now()
	rep, err := ledger.VerifySet(chains, trustIDs)
	return VerifyResult{SetReport: rep, Elapsed: time.Since(start)}, err
}

func runLedgerVerify(src string, trustStr []string, asJSON bool, out io.Writer) error {
	var trust []peer.ID
	for _, s := range trustStr {
		id, err := peer.Decode(s)
		if err != nil {
			return usagef("--trust %q: %v", s, err)
		}
		trust = append(trust, id)
	}
	chains, err := loadChains(src)
	if err != nil {
		return err
	}
	r, err := verifyChains(chains, trust)
	if err != nil {
		if len(trust) == 0 && errors.Is(err, ledger.ErrUntrustedNotary) {
			return fmt.Errorf("ledger verify: %w (no authority's own chain is in the set: name the trusted ones with --trust <peer ID>)", err)
		}
		return fmt.Errorf("ledger verify: %w", err)
	}
	if asJSON {
		return json.NewEncoder(out).Encode(r)
	}
	if !r.Complete {
		fmt.Fprintf(out, "ledger verified: %d blocks in %d chains, every signature and link valid; conservation not checked (the set links to chains it does not hold)\n", r.Blocks, r.Chains)
		return nil
	}
	fmt.Fprintf(out, "ledger verified: %d blocks, conserved (minted %d = balances %d + escrow %d + in flight %d)\n",
		r.Blocks, r.Minted, r.Balances, r.Escrow, r.InFlight)
	return nil
}

func runLedgerExport(ctx context.Context, g *globalOptions, output string, out io.Writer) error {
	var chains map[peer.ID][]*pb.Block
	if sock := filepath.Join(g.DataDir, node.SocketFile); api.Alive(sock) {
		blocks, err := api.GetExport(ctx, sock)
		if err != nil {
			return err
		}
		chains = ledger.GroupChains(blocks)
	} else {
		s, err := openLedgerStore(g.DataDir)
		if err != nil {
			return err
		}
		defer s.Close()
		if chains, err = storeChains(s); err != nil {
			return err
		}
	}
	var blocks []*pb.Block
	ids := make([]peer.ID, 0, len(chains))
	for id := range chains {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		blocks = append(blocks, chains[id]...)
	}
	w := out
	if output != "" {
		f, err := os.Create(output)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	return ledger.Export(w, blocks)
}

// runLedgerMint mints through the running authority's API, or on its store
// directly when no node runs; the receiver claims the points when its node
// next syncs (`ledger balance` on it does).
func runLedgerMint(ctx context.Context, g *globalOptions, o *ledgerOptions, out io.Writer) error {
	to, err := peer.Decode(o.To)
	if err != nil || o.Amount == 0 {
		return usagef("want --to <peer ID> and --amount N > 0")
	}
	if sock := filepath.Join(g.DataDir, node.SocketFile); api.Alive(sock) {
		r, err := api.Mint(ctx, sock, api.MintRequest{To: to.String(), Amount: o.Amount, Reference: o.Ref})
		if err != nil {
			return fmt.Errorf("mint: %w", err)
		}
		fmt.Fprintf(out, "minted %d points for %s (block #%d of %s)\n", o.Amount, to, r.Seq, r.Authority)
		return nil
	}
	key, err := node.LoadOrCreateIdentity(filepath.Join(g.DataDir, node.IdentityFile))
	if err != nil {
		return err
	}
	self, _ := peer.IDFromPrivateKey(key)
	s, err := openLedgerStore(g.DataDir, self)
	if err != nil {
		return err
	}
	defer s.Close()
	n, err := ledgersvc.Restore(s, ledger.NotaryConfig{Key: key}, time.Now())
	if err != nil {
		return err
	}
	resp, outp := ledger.Handle(n, s, &pb.LedgerRequest{Req: &pb.LedgerRequest_Mint{Mint: &pb.MintRequest{To: []byte(to), Amount: o.Amount, Reference: o.Ref}}}, self, time.Now())
	if resp.Error != nil {
		return fmt.Errorf("mint: %s", resp.Error.Message)
	}
	if err := s.Commit(outp); err != nil {
		return fmt.Errorf("mint: %w", err)
	}
	fmt.Fprintf(out, "minted %d points for %s (block #%d of %s)\n", o.Amount, to, outp.Blocks[len(outp.Blocks)-1].Seq, self)
	return nil
}

// nodeLedger serves the API's ledger endpoints from a running node.
type nodeLedger struct{ n *node.Node }

func (l nodeLedger) Balance(ctx context.Context) (api.BalanceInfo, error) {
	st, err := l.n.AccountState(ctx)
	return api.BalanceInfo{Account: l.n.ID().String(), Balance: st.Balance, Home: st.Home.String(), Blocks: st.Blocks}, err
}

func (l nodeLedger) History(context.Context) ([]*pb.Block, error) { return l.n.OwnChain() }

func (l nodeLedger) Export(context.Context) ([]*pb.Block, error) {
	chains, err := storeChains(l.n.LedgerStore())
	if err != nil {
		return nil, err
	}
	ids := make([]peer.ID, 0, len(chains))
	for id := range chains {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var blocks []*pb.Block
	for _, id := range ids {
		blocks = append(blocks, chains[id]...)
	}
	return blocks, nil
}

func (l nodeLedger) Handover(ctx context.Context, to peer.ID) (*pb.Block, error) {
	return l.n.LedgerHandover(ctx, to)
}

func (l nodeLedger) Mint(ctx context.Context, to peer.ID, amount uint64, ref string) (*pb.Block, error) {
	return l.n.Mint(ctx, to, amount, ref)
}
