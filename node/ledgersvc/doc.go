// Package ledgersvc puts package ledger on the network: the
// /p2pjobs/ledger/1.0.0 service an authority runs (Service: the notary
// behind a stream handler, with a group-commit queue so that concurrent
// requests share one fsync), and the account side every client and worker
// runs (Account: registration with the home authority, escrow locks,
// acknowledgements, batched settlement of receipts, claims, balance and
// history, all persisted in the node's own ledger.Store).
//
// The ledger's rules live in package ledger; this package only moves its
// requests and blocks between hosts and stores. Node assembly (package
// node) creates both; the client and worker services use Account through
// their own small interfaces (client.Payer, worker.Payee).
//
// Persist before you send: an authority replies only after the blocks of
// its decision are committed, and an account stores a countersigned block
// before it builds the next one. An account whose request may have been
// countersigned without it hearing the reply re-reads its chain from its
// home authority before it signs anything else, so a lost reply never
// becomes a fork; after a restart it does so before its first operation
// (logged as a ledger_block event with resync: true and how many blocks
// it caught up). Its escrows are rebuilt from its chain, and the unpaid
// rest of expired ones is asked back on a schedule (WithRefundEvery). A
// worker's unpaid receipts are saved in its store once per settlement
// round (ledger.UnpaidStore), so a restart does not forget what it is owed.
//
// Hand-over (Account.Handover; the rules are in package ledger, doc.go):
// the old home countersigns the HANDOVER — or refuses with
// LEDGER_ESCROWS_OPEN while the account has escrow open — and the account
// stores it, then registers its chain with the new home. Until the new
// home confirms it knows the account (GetHead naming itself as home) the
// account registers there again before anything else, after a restart too:
// its home is read from its chain. A worker that presents receipts to a
// client's former home and hears "unknown escrow" asks the authorities
// again which one is the client's home now.
package ledgersvc
