package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/ledger/boltstore"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// WithLedger keeps the node's points ledger in the bbolt file at path
// (<data-dir>/ledger.db). Without it the node runs without points: it
// neither pays nor is paid, and an authority notarises nothing.
func WithLedger(path string) Option { return func(o *options) { o.ledgerPath = path } }

// WithLedgerAccountOptions passes options to the node's ledger account
// (tests: settlement timing).
func WithLedgerAccountOptions(a ...ledgersvc.AccountOption) Option {
	return func(o *options) { o.accountOpt = append(o.accountOpt, a...) }
}

// LedgerTrust is the set of authorities whose signatures the node's ledger
// accepts: its bootstrap authorities (the trust roots), the peer IDs in
// authority.trust, and itself when it is an authority. Authorities learned
// later never count.
func (n *Node) LedgerTrust() ledger.TrustSet {
	t := ledger.NewTrustSet()
	for _, a := range n.Authorities {
		t[a.ID] = struct{}{}
	}
	for _, s := range n.Cfg.Authority.Trust {
		if id, err := peer.Decode(s); err == nil {
			t[id] = struct{}{}
		}
	}
	if n.Cfg.Has(RoleAuthority) {
		t[n.Host.ID()] = struct{}{}
	}
	return t
}

// openLedger opens the store and, by role, the notary service (authority)
// and the node's account (worker, client: homed at ledger.home, by
// default the first bootstrap authority). The account registers once the node is connected (readyLedger).
func (n *Node) openLedger(o *options) error {
	if o.ledgerPath == "" {
		return nil
	}
	trust := n.LedgerTrust()
	st, err := boltstore.Open(o.ledgerPath, trust)
	if err != nil {
		return fmt.Errorf("node: ledger %s: %w", o.ledgerPath, err)
	}
	n.ledgerStore = st
	if n.Cfg.Has(RoleAuthority) {
		a := n.Cfg.Authority
		svc, err := ledgersvc.New(n.Host, st, ledger.NotaryConfig{Key: n.Key, Trust: trust, DisputeWindow: a.DisputeWindow, MinLockLifetime: a.MinLockLifetime,
			Grant: ledger.GrantPolicy{Amount: a.Grant.Amount, PerIdentity: a.Grant.PerIdentity, MaxPerHour: a.Grant.MaxPerHour}},
			ledgersvc.WithEvents(n.Log))
		if err != nil {
			return err
		}
		n.Ledger = svc
		return nil // an authority's points are its own chain
	}
	if !n.Cfg.Has(RoleWorker) && !n.Cfg.Has(RoleClient) {
		return nil
	}
	var home peer.ID
	if len(n.Authorities) > 0 {
		home = n.Authorities[0].ID
	}
	if h := n.Cfg.Ledger.Home; h != "" {
		home, _ = peer.Decode(h) // checked by Validate
		if !slices.ContainsFunc(n.Authorities, func(a peer.AddrInfo) bool { return a.ID == home }) {
			return fmt.Errorf("%w: ledger.home %s is not one of the --bootstrap authorities", ErrConfig, home)
		}
	}
	acct, err := ledgersvc.OpenAccount(n.Host, n.Key, st, trust, home,
		append([]ledgersvc.AccountOption{ledgersvc.WithAccountEvents(n.Log)}, o.accountOpt...)...)
	if errors.Is(err, ledgersvc.ErrNoHome) {
		n.logger.Warn("no bootstrap authority: this node neither pays nor is paid")
		return nil
	}
	if err != nil {
		return err
	}
	// The chain says where home is: after a hand-over it overrides
	// ledger.home, which only picks the home of a new account.
	if h := acct.Home(); h != home {
		n.logger.Info("ledger home from the account's chain (handed over)", "home", h, "configured", home)
		if !slices.ContainsFunc(n.Authorities, func(a peer.AddrInfo) bool { return a.ID == h }) {
			n.logger.Warn("the account's home is not one of the --bootstrap authorities: add its address", "home", h)
		}
	}
	n.Account = acct
	return nil
}

// ErrNoAccount means the node has no ledger account (an authority, or no
// ledger, or no bootstrap authority).
var ErrNoAccount = errors.New("node: this node has no ledger account (a worker or client with a ledger has one)")

// LedgerHandover moves the node's account to the authority to, which must
// be one of its --bootstrap authorities (trusted, and reachable after a
// restart): see ledgersvc.Account.Handover. The new home is recorded in
// the chain, so it persists across restarts whatever ledger.home says.
func (n *Node) LedgerHandover(ctx context.Context, to peer.ID) (*pb.Block, error) {
	if n.Account == nil {
		return nil, ErrNoAccount
	}
	if !slices.ContainsFunc(n.Authorities, func(a peer.AddrInfo) bool { return a.ID == to }) {
		return nil, fmt.Errorf("%w: %s is not one of the --bootstrap authorities (the new home must be trusted and reachable)", ledger.ErrUntrustedNotary, to)
	}
	return n.Account.Handover(ctx, to)
}

// readyLedger opens the account at its home; a failure is retried by the
// account's next operation.
func (n *Node) readyLedger(ctx context.Context) {
	if n.Account == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := n.Account.Ready(ctx); err != nil {
		n.logger.Warn("ledger account not opened yet; will retry", "home", n.Account.Home(), "err", err)
		return
	}
	_ = n.Account.Sync(ctx) // claim grants and mints waiting for us
}

// closeLedger stops the account (a last settlement attempt), the service
// and the store.
func (n *Node) closeLedger() error {
	var errs []error
	if n.Account != nil {
		errs = append(errs, n.Account.Close())
	}
	if n.Ledger != nil {
		errs = append(errs, n.Ledger.Close())
	}
	if n.ledgerStore != nil {
		errs = append(errs, n.ledgerStore.Close())
	}
	return errors.Join(errs...)
}

// LedgerStore is the node's ledger store (nil without WithLedger): read it;
// write only through the ledger services.
func (n *Node) LedgerStore() ledger.Store { return n.ledgerStore }
