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
// (Notary.Register with the whole chain, ending with the hand-over): it
// verifies the chain from genesis with its trust set — every
// countersignature by the home of its time, the hand-over's by the old
// home — before anything changes, and countersigns from the next seq on. A
// retried registration changes nothing; an account may move back
// to a former home, which then stores the blocks after its own hand-over.
// The chain is the truth about where home is (ChainState.Home): a node
// reads its home from its stored chain, not from its configuration. The
// whole chain travels in one request, so a chain over ledger.MaxRequestSize
// (some ten thousand blocks) cannot move.
//
// # Threat model
//
// Trusted: the authorities of a node's trust set (its bootstrap peer IDs
// and an authority's authority.trust) are honest but may crash; their
// stores are fsync'd and a crash loses nothing acknowledged. Everyone
// else — any client, worker or stranger — may be dishonest, alone. The
// invariants below hold for the whole set of trusted authorities after
// any sequence of requests; TestAdversaryLedger, TestAdversaryService and
// TestAdversaryModel (go test -run Adversary ./...) try the attacks.
//
// Conservation: minted = Σ balances + open escrow + in flight, always.
// Points are created only by MINT on a trusted authority's own chain; every
// other amount moves between chains and Apply refuses overdraft and
// uint64 overflow.
//
// Credited once: an out-block (TRANSFER_OUT, ESCROW_RELEASE,
// ESCROW_REFUND) names the receiver's home in its authority field, or
// names none and then means the authority that countersigned or wrote it
// (ClaimHome). A TRANSFER_IN claiming it is countersigned only on the
// receiver's chain that has that authority as its home, now or before a
// hand-over; the chain's refs refuse a second claim on the same chain.
// An authority holds at most one chain per account (a second genesis is
// refused, a second block at a seq is a fork), and a chain reaches another
// authority only through the hand-over its old home countersigned, so at
// most one chain can ever claim an out-block. The authority's service
// (node/ledgersvc) also refuses a genesis for an account another trusted
// authority it can reach already holds (ErrHomedElsewhere); should that
// check miss (an authority down, two registrations racing), an identity
// registered at two homes (two chains) still gains nothing: each payment
// is credited where its payer named. Hand-over keeps this: the claim stays valid on the moved
// chain (its old home is a former home), and the old home, whose
// responsibility ended at the hand-over, countersigns nothing new for it.
// Audit checks the rule offline. Payers name the home they look up
// (ledgersvc.Account.Transfer); the escrow authority names the worker's
// home the worker gives in its SettleRequest (honoured for its own releases
// only; the receipts of a worker homed elsewhere are settled by that worker
// only, so no one can send its payment where it cannot claim it), and the
// client's current home in a refund.
//
// Paid only for awarded work: a receipt is paid from an escrow only if the
// escrow is held here, was locked by the receipt's client for the
// receipt's worker under the receipt's bid, has the price unreserved, and
// the job has no other receipt. The client acknowledges only receipts
// naming its award to that worker at the bid's price for the job it sent
// (node/client); it disputes any other receipt with the receipt as
// evidence (DisputeRequest.receipt), which files it disputed: a disputed
// receipt is never paid without the client's acknowledgement (its price
// stays frozen). Not yet enforced by the notary alone: the lock does not
// commit the bid's price or the awarded job ids, so a worker can file an
// unacknowledged receipt for a job it did not run at up to the escrow's
// rest, and is paid after the dispute window unless the client disputes
// it; the client disputes what it sees, not receipts filed behind its back.
//
// Work only against money: the notary refuses a lock that expires sooner
// than its minimum lock lifetime (ErrLockTooShort); a worker runs the
// first job of an award only after it verified the client's countersigned
// lock (GetEscrow, CheckLock: for itself, at least price × jobs, expiring
// past its settlement horizon), and declines with NO_ESCROW otherwise.
//
// Retries are idempotent, replays are refused: a retried genesis, block
// or arrival gets its original answer (Output.Reply) and persists nothing,
// so a retry can never make a commit fail; a block that another home
// countersigned (an account's past after a hand-over) is refused
// (ErrReplay): the new home never countersigns old blocks again. Only the
// owner may submit its blocks. A re-registration of a chain the home holds
// is judged before anything is applied: nothing of it is applied twice and
// no escrow is opened again.
//
// Fail closed: Restore verifies every stored chain and replays every
// escrow debit; a chain that does not verify, or a release/refund that
// debits an unknown escrow or more than it holds, stops the authority
// with a *BlockError naming the account and block.
//
// A dishonest participant can still: fork its own chain (its account is
// then refused everywhere it is detected); open accounts at several homes
// (each holds its own points); hold points in escrow until expiry; refuse
// to acknowledge a delivered result (the receipt is then paid after the
// dispute window) or dispute it (its price then stays frozen for both).
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
