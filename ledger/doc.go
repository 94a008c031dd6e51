// Package ledger is the points ledger of p2pjobs: blocks, their signed byte
// encoding, chain validation, conservation audit, escrow rules and the
// authority's notary — all pure functions and state machines of their inputs
// (time is passed in, nothing here touches the network or the disk) — plus
// the Store interface with an in-memory implementation. The bbolt store is
// ledger/boltstore; the Store conformance suite is ledger/storetest.
//
// Anyone may import it: node services use the Notary and a Store; the CLI
// uses VerifyChain, Audit, Export and Import.
//
// # Model
//
// Every account (a libp2p peer ID) owns one append-only chain of blocks that
// it signs with its Ed25519 key. Every account has a home authority, named in
// its genesis block and moved by a HANDOVER block. The home authority is the
// account's sequencer: every block of the chain, genesis included, carries
// its countersignature, and it countersigns only a block that extends the
// head it knows (seq = head+1, prev = head hash). Two owner-signed blocks with
// the same (account, seq) are a fork: kept as evidence, the account is
// refused. An authority's own chain (genesis names itself as home) needs no
// countersignature; the authority must be trusted by the verifier.
//
// Balances move as follows (all amounts are uint64 points):
//
//	MINT            authority's own chain only        balance += amount
//	TRANSFER_OUT    payer                             balance -= amount  (out)
//	TRANSFER_IN     receiver, claims an out by hash   balance += amount  (in)
//	ESCROW_LOCK     client, escrow id = reference     balance -= amount, escrow += amount
//	ESCROW_RELEASE  escrow authority's own chain      escrow lines -= ..., out to the worker
//	ESCROW_REFUND   escrow authority's own chain      escrow lines -= ..., out to the client
//
// Mint: points are created only by a trusted authority on its own chain
// (MINT credits the authority), and reach an account by an ordinary transfer
// (Notary.Mint emits MINT + TRANSFER_OUT; the receiver appends TRANSFER_IN).
//
// Every credit is a two-step transfer: the paying side's block (TRANSFER_OUT,
// ESCROW_RELEASE or ESCROW_REFUND — an "out") is countersigned or authored by
// the payer's authority; the receiver appends TRANSFER_IN whose reference is
// the hex hash of that out-block, countersigned by the receiver's own home
// authority after it verified the out-block (CountersignRequest.source). This
// is how a transfer between accounts of different home authorities is
// honoured by both. An out-block is claimed at most once (ErrReplay).
//
// Conservation (Audit): over a complete set of chains,
//
//	minted = Σ balances + open escrow + in flight
//
// where open escrow = Σ locks − Σ release/refund lines and in flight = outs
// not yet claimed by a TRANSFER_IN.
//
// # Escrow
//
// The client locks an award's price with its home authority (ESCROW_LOCK:
// reference = escrow id, counterparty = worker, expires_ms = award expiry);
// that authority holds the escrow and alone may release or refund it. A job
// is paid to the worker (Notary.Settle) when the authority holds the
// worker's signed receipt (pb.SignedReceipt, bid_id → escrow id EscrowID) and
// either the client's acknowledgement (ClientAckBytes) or the receipt was
// filed at least DisputeWindow ago and the client did not dispute it. A
// disputed job's price stays frozen in escrow (never refunded, never paid)
// until the client acknowledges it: a client cannot keep both the result and
// the points. Many jobs settle in one ESCROW_RELEASE block whose reference is
// the hex Merkle root (MerkleRoot) of the receipt hashes; the receipts are
// stored beside it (pb.Settlement) and each is provable alone (MerkleProof).
// The rest of an escrow is refunded to the client after expiry, or earlier
// with the worker's consent (RefundConsentBytes).
//
// # Hand-over
//
// An account moves home with a HANDOVER block (Wallet.Handover): its
// authority field names the new home, which must be trusted. The OLD home
// countersigns it — it is the last block the old home countersigns for the
// account: its responsibility ends at that seq, anything new is refused
// (ErrWrongNotary), a retry of the hand-over itself is countersigned again.
// The old home refuses a hand-over while it holds escrow the account locked
// that still holds points, pending or disputed receipts included
// (ErrEscrowsOpen, wire code LEDGER_ESCROWS_OPEN): an escrow belongs to
// the authority that countersigned its lock, and a hand-over must not
// leave the account tied to its old home. Wait until the escrows are paid
// or refunded, then hand over. Points paid to the account by anyone,
// the old home included, are claimed at the new home as usual.
//
// The account then registers its continuation with the NEW home
// (Notary.Register with the whole chain): it verifies the chain from
// genesis with its trust set — every countersignature by the home of its
// time, the hand-over's by the old home — and countersigns from the next
// seq on. A retried registration changes nothing; an account may move back
// to a former home, which then stores the blocks after its own hand-over.
// The chain is the truth about where home is (ChainState.Home): a node
// reads its home from its stored chain, not from its configuration. The
// whole chain travels in one request, so a chain over ledger.MaxRequestSize
// (some ten thousand blocks) cannot move.
//
// # Signed bytes
//
// Signatures and hashes are computed over a fixed, hand-written layout, not
// over protobuf, so they cannot change with a protobuf library. Let
// lp(x) = uint32 big-endian length || x, u64(x) = 8 bytes big-endian,
// i64(x) = u64(uint64(x)), u32(x) = 4 bytes big-endian. The body is
//
//	"p2pjobs/ledger/block/v1\x00"
//	lp(account) u64(seq) lp(prev) u32(kind) u64(amount) lp(counterparty)
//	lp(reference) lp(authority) i64(timestamp_ms) i64(expires_ms)
//	u32(len(lines)) { lp(client) lp(escrow) u64(amount) }*
//
// The owner signs "p2pjobs/ledger/owner/v1\x00" || body. The notary signs
// "p2pjobs/ledger/notary/v1\x00" || body || lp(owner_sig) || lp(notary). The
// block hash (prev links, TRANSFER_IN references) is
// sha256("p2pjobs/ledger/hash/v1\x00" || body || lp(owner_sig) || lp(notary)
// || lp(notary_sig)). This layout is frozen for v1: a new field means a v2
// prefix. On the wire a block is the protobuf pb.Block; DecodeBlock accepts
// only its canonical (deterministic, no unknown fields) encoding, so one block
// has exactly one byte string.
//
// # Ownership
//
// Functions never retain or modify the blocks passed to them unless they say
// so; blocks returned by a Store or the Notary belong to the caller.
package ledger
