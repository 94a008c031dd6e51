package ledger_test

import (
	"testing"

	"github.com/p2pjobs/p2pnode/ledger"
	. "github.com/p2pjobs/p2pnode/ledger/storetest"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// BenchmarkVerify: offline `ledger verify` speed, in blocks/s.
func BenchmarkVerify(b *testing.B) {
	f := NewFixture(b, 1<<40)
	for range 999 {
		o := Must(f.Notary.Countersign(&pb.CountersignRequest{Block: Must(f.Client.Transfer(f.Worker.ID(), 1, "t", f.Now))}, f.Now))
		if err := f.Client.Accept(o.Blocks[0]); err != nil {
			b.Fatal(err)
		}
	}
	chain := f.Client.Blocks()
	b.ResetTimer()
	for b.Loop() {
		if _, err := ledger.VerifyChain(chain, f.Trust); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(chain)*b.N)/b.Elapsed().Seconds(), "blocks/s")
}

// BenchmarkNotarise: transfers countersigned per second at one authority
// (pure notary; see boltstore for the durable figure).
func BenchmarkNotarise(b *testing.B) {
	f := NewFixture(b, 1<<40)
	b.ResetTimer()
	for b.Loop() {
		blk := Must(f.Client.Transfer(f.Worker.ID(), 1, "t", f.Now))
		o, err := f.Notary.Countersign(&pb.CountersignRequest{Block: blk}, f.Now)
		if err != nil {
			b.Fatal(err)
		}
		if err := f.Client.Accept(o.Blocks[0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "transfers/s")
}
