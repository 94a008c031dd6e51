package boltstore_test

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/ledger/boltstore"
	. "github.com/p2pjobs/p2pnode/ledger/storetest"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// BenchmarkNotariseDurable: transfers notarised and committed to bbolt
// (fsync'd) per second, by 16 clients at once: concurrent commits share
// transactions and fsyncs.
func BenchmarkNotariseDurable(b *testing.B) {
	f := NewFixture(b, 0)
	const clients = 16
	var ws []*ledger.Wallet
	for range clients {
		k, _ := Key(b)
		w := f.Register(b, k)
		f.Fund(b, w, 1<<40)
		ws = append(ws, w)
	}
	s, err := boltstore.Open(filepath.Join(b.TempDir(), "l.db"), f.Trust)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, o := range f.Outputs {
		if err := s.Commit(o); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/clients + 1
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range per {
				o, err := f.Notary.Countersign(&pb.CountersignRequest{Block: Must(w.Transfer(f.Worker.ID(), 1, "t", f.Now))}, f.Now)
				if err != nil {
					panic(err)
				}
				if err := s.Commit(o); err != nil {
					panic(err)
				}
				_ = w.Accept(o.Blocks[0])
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(per*clients)/b.Elapsed().Seconds(), "transfers/s")
}
