package ledger

import (
	"errors"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Sentinel errors. Match with errors.Is; a *BlockError wraps one of them and
// names the first bad block.
var (
	ErrMalformed         = errors.New("ledger: malformed block")
	ErrBadPeerID         = errors.New("ledger: bad peer ID")
	ErrBadSignature      = errors.New("ledger: bad signature")
	ErrBrokenLink        = errors.New("ledger: broken hash link")
	ErrBadSeq            = errors.New("ledger: sequence gap")
	ErrBadGenesis        = errors.New("ledger: bad genesis")
	ErrBadKind           = errors.New("ledger: bad block kind")
	ErrBadTimestamp      = errors.New("ledger: timestamp goes backwards")
	ErrMissingCountersig = errors.New("ledger: countersignature missing")
	ErrWrongNotary       = errors.New("ledger: countersigned by an authority that is not the account's home")
	ErrUntrustedNotary   = errors.New("ledger: untrusted notary")
	ErrUntrustedMint     = errors.New("ledger: mint by an untrusted authority")
	ErrNotAuthority      = errors.New("ledger: block kind reserved to an authority's own chain")
	ErrOverdraft         = errors.New("ledger: overdraft")
	ErrOverflow          = errors.New("ledger: amount overflow")
	ErrFork              = errors.New("ledger: fork")
	ErrReplay            = errors.New("ledger: replay")
	ErrUnknownSource     = errors.New("ledger: transfer-in claims an unknown out-block")
	ErrTransferMismatch  = errors.New("ledger: transfer-in does not match its out-block")
	ErrUnknownEscrow     = errors.New("ledger: unknown escrow")
	ErrEscrowMismatch    = errors.New("ledger: escrow release/refund does not match its lock")
	ErrNotConserved      = errors.New("ledger: points not conserved")
	ErrStaleHead         = errors.New("ledger: block does not extend the known head")
	ErrAccountRefused    = errors.New("ledger: account refused")
	ErrUnknownAccount    = errors.New("ledger: unknown account")
	ErrAccountExists     = errors.New("ledger: account exists")
	ErrNotOperator       = errors.New("ledger: not an operator of this authority")
	ErrBadReceipt        = errors.New("ledger: bad receipt")
	ErrEscrowExpired     = errors.New("ledger: escrow expired")
	ErrEscrowNotExpired  = errors.New("ledger: escrow not expired")
	ErrDisputed          = errors.New("ledger: receipt disputed")
	ErrAlreadyPaid       = errors.New("ledger: job already paid")
	ErrGrantRefused      = errors.New("ledger: grant refused")
	ErrNotFound          = errors.New("ledger: not found")
	ErrBadRequest        = errors.New("ledger: bad request")
	ErrClosed            = errors.New("ledger: store closed")
	// ErrEscrowsOpen: the old home refuses a hand-over while it holds
	// escrow the account locked that is not yet released or refunded.
	ErrEscrowsOpen = errors.New("ledger: hand-over refused while escrows are open")
	// ErrHomedElsewhere: a genesis for an account another trusted
	// authority already holds (one account, one home at a time).
	ErrHomedElsewhere = errors.New("ledger: account homed at another authority")
	// ErrLockTooShort: an escrow lock expiring sooner than the notary's
	// minimum lock lifetime.
	ErrLockTooShort = errors.New("ledger: escrow lock expires too soon")
)

// BlockError names the block where validation failed.
type BlockError struct {
	Account peer.ID
	Seq     uint64
	Err     error
}

func (e *BlockError) Error() string {
	return fmt.Sprintf("block %s#%d: %v", e.Account, e.Seq, e.Err)
}

func (e *BlockError) Unwrap() error { return e.Err }

func blockErr(b *pb.Block, err error) error {
	if b == nil {
		return &BlockError{Err: err}
	}
	return &BlockError{Account: peer.ID(b.Account), Seq: b.Seq, Err: err}
}

// Code maps a ledger error to its wire error code (common.proto LEDGER_*).
func Code(err error) pb.ErrorCode {
	switch {
	case err == nil:
		return pb.ErrorCode_ERROR_UNSPECIFIED
	case errors.Is(err, ErrOverdraft):
		return pb.ErrorCode_LEDGER_INSUFFICIENT_FUNDS
	case errors.Is(err, ErrFork):
		return pb.ErrorCode_LEDGER_FORK
	case errors.Is(err, ErrAccountRefused), errors.Is(err, ErrHomedElsewhere):
		return pb.ErrorCode_LEDGER_ACCOUNT_REFUSED
	case errors.Is(err, ErrEscrowsOpen):
		return pb.ErrorCode_LEDGER_ESCROWS_OPEN
	case errors.Is(err, ErrStaleHead):
		return pb.ErrorCode_LEDGER_STALE_HEAD
	case errors.Is(err, ErrUntrustedNotary), errors.Is(err, ErrUntrustedMint), errors.Is(err, ErrWrongNotary):
		return pb.ErrorCode_LEDGER_UNTRUSTED
	case errors.Is(err, ErrNotOperator):
		return pb.ErrorCode_UNAUTHORIZED
	case errors.Is(err, ErrUnknownAccount), errors.Is(err, ErrNotFound), errors.Is(err, ErrUnknownEscrow):
		return pb.ErrorCode_NOT_FOUND
	case errors.Is(err, ErrGrantRefused):
		return pb.ErrorCode_RATE_LIMITED
	case errors.Is(err, ErrBadRequest), errors.Is(err, ErrLockTooShort):
		return pb.ErrorCode_BAD_REQUEST
	default:
		return pb.ErrorCode_LEDGER_INVALID_BLOCK
	}
}

// ToPB converts err into a wire error.
func ToPB(err error) *pb.Error {
	if err == nil {
		return nil
	}
	return &pb.Error{Code: Code(err), Message: err.Error()}
}
