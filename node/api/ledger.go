package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// Ledger is the ledger part of the API, served by a running node (which
// owns <data-dir>/ledger.db, so other processes cannot open it).
type Ledger interface {
	// Balance is the node's own account (a worker or client syncs first:
	// points minted or released to it are claimed).
	Balance(ctx context.Context) (BalanceInfo, error)
	// History is the node's own chain.
	History(ctx context.Context) ([]*pb.Block, error)
	// Export is every chain the node's store holds.
	Export(ctx context.Context) ([]*pb.Block, error)
	// Mint creates points on an authority's own chain for to; it returns
	// the TRANSFER_OUT the receiver claims.
	Mint(ctx context.Context, to peer.ID, amount uint64, ref string) (*pb.Block, error)
	// Handover moves the node's account to the authority to (the old home
	// countersigns, the new one takes the chain); it returns the
	// countersigned HANDOVER block.
	Handover(ctx context.Context, to peer.ID) (*pb.Block, error)
}

// BalanceInfo is GET /v1/ledger/balance.
type BalanceInfo struct {
	Account string `json:"account"`
	Balance uint64 `json:"balance"`
	Home    string `json:"home"`
	Blocks  uint64 `json:"blocks"`
	Escrow  uint64 `json:"escrow,omitempty"` // open escrow this node locked
}

// MintRequest is POST /v1/ledger/mint.
type MintRequest struct {
	To        string `json:"to"`
	Amount    uint64 `json:"amount"`
	Reference string `json:"reference"`
}

// MintReply says which block of the authority's chain paid the receiver.
type MintReply struct {
	Seq       uint64 `json:"seq"`
	Authority string `json:"authority"`
}

// HandoverRequest is POST /v1/ledger/handover.
type HandoverRequest struct {
	To string `json:"to"` // the new home authority's peer ID
}

// HandoverReply names the hand-over block and the homes.
type HandoverReply struct {
	Seq  uint64 `json:"seq"`
	From string `json:"from"` // the old home, which countersigned it
	To   string `json:"to"`
}

// ErrNoLedger is the API's answer when the node keeps no ledger.
var ErrNoLedger = errors.New("api: this node keeps no ledger")

func ledgerRoutes(mux *http.ServeMux, b Backend) {
	get := func(w http.ResponseWriter) Ledger {
		l := b.Ledger()
		if l == nil {
			http.Error(w, ErrNoLedger.Error(), http.StatusConflict)
		}
		return l
	}
	mux.HandleFunc("GET /v1/ledger/balance", func(w http.ResponseWriter, r *http.Request) {
		l := get(w)
		if l == nil {
			return
		}
		bi, err := l.Balance(r.Context())
		if err != nil && bi.Account == "" {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(bi)
	})
	blocks := func(f func(Ledger, context.Context) ([]*pb.Block, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			l := get(w)
			if l == nil {
				return
			}
			bs, err := f(l, r.Context())
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			var buf bytes.Buffer
			if err := ledger.Export(&buf, bs); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(buf.Bytes())
		}
	}
	mux.HandleFunc("GET /v1/ledger/history", blocks(Ledger.History))
	mux.HandleFunc("GET /v1/ledger/export", blocks(Ledger.Export))
	mux.HandleFunc("POST /v1/ledger/mint", func(w http.ResponseWriter, r *http.Request) {
		var req MintRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, "want JSON {\"to\": \"<peer ID>\", \"amount\": N}", http.StatusBadRequest)
			return
		}
		to, err := peer.Decode(req.To)
		if err != nil || req.Amount == 0 {
			http.Error(w, "want a peer ID in to and amount > 0", http.StatusBadRequest)
			return
		}
		l := get(w)
		if l == nil {
			return
		}
		b, err := l.Mint(r.Context(), to, req.Amount, req.Reference)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(MintReply{Seq: b.Seq, Authority: peer.ID(b.Account).String()})
	})
	mux.HandleFunc("POST /v1/ledger/handover", func(w http.ResponseWriter, r *http.Request) {
		var req HandoverRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, "want JSON {\"to\": \"<authority peer ID>\"}", http.StatusBadRequest)
			return
		}
		to, err := peer.Decode(req.To)
		if err != nil {
			http.Error(w, "want an authority's peer ID in to", http.StatusBadRequest)
			return
		}
		l := get(w)
		if l == nil {
			return
		}
		b, err := l.Handover(r.Context(), to)
		if err != nil && b == nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		if err != nil { // signed and stored, the new home not reached yet
			http.Error(w, fmt.Sprintf("hand-over #%d countersigned by %s; %v", b.Seq, peer.ID(b.Notary), err), http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(HandoverReply{Seq: b.Seq, From: peer.ID(b.Notary).String(), To: peer.ID(b.Authority).String()})
	})
}

// call does one request to the node at path; a non-200 reply is an error
// carrying the node's message.
func call(ctx context.Context, path, method, url string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequestWithContext(ctx, method, "http://node"+url, rd)
	resp, err := httpClient(path).Do(req)
	if err != nil {
		return nil, fmt.Errorf("api: no node running here (%s): %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("api: node says: %s", bytes.TrimSpace(msg))
	}
	return resp, nil
}

// GetBalance asks the node at path for its balance.
func GetBalance(ctx context.Context, path string) (BalanceInfo, error) {
	var bi BalanceInfo
	resp, err := call(ctx, path, http.MethodGet, "/v1/ledger/balance", nil)
	if err != nil {
		return bi, err
	}
	defer resp.Body.Close()
	return bi, json.NewDecoder(resp.Body).Decode(&bi)
}

// GetHistory returns the node's own chain; GetExport every chain it holds.
func GetHistory(ctx context.Context, path string) ([]*pb.Block, error) {
	return getBlocks(ctx, path, "/v1/ledger/history")
}

// GetExport returns every chain the node at path holds.
func GetExport(ctx context.Context, path string) ([]*pb.Block, error) {
	return getBlocks(ctx, path, "/v1/ledger/export")
}

func getBlocks(ctx context.Context, path, url string) ([]*pb.Block, error) {
	resp, err := call(ctx, path, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return ledger.Import(resp.Body)
}

// Handover asks the node at path to move its account's home.
func Handover(ctx context.Context, path string, req HandoverRequest) (HandoverReply, error) {
	var hr HandoverReply
	resp, err := call(ctx, path, http.MethodPost, "/v1/ledger/handover", req)
	if err != nil {
		return hr, err
	}
	defer resp.Body.Close()
	return hr, json.NewDecoder(resp.Body).Decode(&hr)
}

// Mint asks the authority at path to mint.
func Mint(ctx context.Context, path string, req MintRequest) (MintReply, error) {
	var mr MintReply
	resp, err := call(ctx, path, http.MethodPost, "/v1/ledger/mint", req)
	if err != nil {
		return mr, err
	}
	defer resp.Body.Close()
	return mr, json.NewDecoder(resp.Body).Decode(&mr)
}
