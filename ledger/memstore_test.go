package ledger_test

import (
	"testing"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/ledger/storetest"
)

func TestMemStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, trust ledger.TrustSet) ledger.Store { return ledger.NewMemStore(trust) })
}
