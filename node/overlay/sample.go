package overlay

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// AuthoritySampler samples registered workers through the authorities'
// discover protocol. The registry pages in peer-ID order, so a page that
// starts after a random peer ID is a random window of it; a short window
// wraps around to the start.
type AuthoritySampler struct {
	H           host.Host
	Authorities func() []peer.AddrInfo
}

var discoverX = protocols.Exchange{Max: protocols.MaxDiscoverMsg, Timeout: protocols.DiscoverTimeout}

// Sample asks each authority in turn until n workers are known.
func (a AuthoritySampler) Sample(ctx context.Context, n int) ([]peer.AddrInfo, error) {
	var (
		out  []peer.AddrInfo
		seen = map[peer.ID]bool{a.H.ID(): true}
		errs []error
	)
	for _, auth := range a.Authorities() {
		if len(out) >= n {
			break
		}
		if len(auth.Addrs) > 0 {
			a.H.Peerstore().AddAddrs(auth.ID, auth.Addrs, time.Hour)
		}
		cursor := randomCursor()
		for range 2 { // the window after the cursor, then the wrap-around
			resp := &pb.DiscoverResponse{}
			req := &pb.DiscoverRequest{Limit: uint32(n - len(out) + 1), Cursor: cursor}
			_, err := protocols.Call(ctx, a.H, auth.ID, []protocol.ID{protocols.Discover}, discoverX, req, resp)
			if err == nil {
				err = protocols.FromPB(resp.Error)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("authority %s: %w", auth.ID, err))
				break
			}
			for _, r := range resp.Workers {
				id, err := peer.IDFromBytes(r.PeerId)
				if err != nil || seen[id] || len(out) >= n {
					continue
				}
				seen[id] = true
				ai := peer.AddrInfo{ID: id}
				for _, b := range r.Addrs {
					if m, err := ma.NewMultiaddrBytes(b); err == nil {
						ai.Addrs = append(ai.Addrs, m)
					}
				}
				out = append(out, ai)
			}
			if len(out) >= n || cursor == "" {
				break
			}
			cursor = ""
		}
	}
	return out, errors.Join(errs...)
}

// randomCursor is the string form of a fresh random peer ID.
func randomCursor() string {
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return ""
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		return ""
	}
	return id.String()
}
