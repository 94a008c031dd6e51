package node

import (
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Where a node learned of an authority.
const (
	SourceBootstrap = "bootstrap" // --bootstrap: a trust root
	SourceSettings  = "settings"  // pushed by an authority in RegisterResponse.Settings
	SourceIdentify  = "identify"  // a connected peer that serves the register protocol
)

// authorityBook is the set of authorities a node knows: its bootstrap
// authorities (the trust roots, whose signatures alone count as notary
// signatures) and those learned since. Learned authorities are used for
// registration, discovery and relaying, never as notaries.
type authorityBook struct {
	self peer.ID

	mu      sync.Mutex // guards the fields below
	entries map[peer.ID]*authorityEntry
	order   []peer.ID
	learned int // entries not from bootstrap
	onNew   []func(peer.AddrInfo)
}

type authorityEntry struct {
	info    peer.AddrInfo
	source  string
	learned time.Time
}

func newAuthorityBook(self peer.ID, bootstrap []peer.AddrInfo) *authorityBook {
	b := &authorityBook{self: self, entries: map[peer.ID]*authorityEntry{}}
	for _, a := range bootstrap {
		b.add(a, SourceBootstrap)
	}
	return b
}

// maxLearned caps the authorities learned after start: any peer can claim
// to serve the register protocol, and each one learned is registered with,
// discovered through and tried as a relay.
const maxLearned = 64

// maxAddrsPerAuthority caps the addresses merged into one entry.
const maxAddrsPerAuthority = 32

// add records a (merging addresses into a known entry) and reports whether
// it is new; subscribers hear of new authorities outside the lock. Past
// maxLearned learned authorities, new ones are ignored.
func (b *authorityBook) add(a peer.AddrInfo, source string) bool {
	if a.ID == "" || a.ID == b.self {
		return false
	}
	b.mu.Lock()
	if e := b.entries[a.ID]; e != nil {
		for _, x := range a.Addrs {
			if len(e.info.Addrs) < maxAddrsPerAuthority && !slices.ContainsFunc(e.info.Addrs, x.Equal) {
				e.info.Addrs = append(e.info.Addrs, x)
			}
		}
		b.mu.Unlock()
		return false
	}
	if source != SourceBootstrap && b.learned >= maxLearned {
		b.mu.Unlock()
		return false
	}
	if source != SourceBootstrap {
		b.learned++
	}
	b.entries[a.ID] = &authorityEntry{info: peer.AddrInfo{ID: a.ID, Addrs: slices.Clone(a.Addrs)}, source: source, learned: time.Now()}
	b.order = append(b.order, a.ID)
	subs := slices.Clone(b.onNew)
	b.mu.Unlock()
	for _, f := range subs {
		f(a)
	}
	return true
}

// subscribe calls f for every authority learned from now on.
func (b *authorityBook) subscribe(f func(peer.AddrInfo)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.onNew = append(b.onNew, f)
}

// list returns the known authorities in the order they were learned.
func (b *authorityBook) list() []peer.AddrInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]peer.AddrInfo, 0, len(b.order))
	for _, id := range b.order {
		e := b.entries[id]
		out = append(out, peer.AddrInfo{ID: id, Addrs: slices.Clone(e.info.Addrs)})
	}
	return out
}

func (b *authorityBook) source(id peer.ID) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.entries[id]; e != nil {
		return e.source
	}
	return ""
}
