package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/ledger/boltstore"
	"github.com/p2pjobs/p2pnode/ledger/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, trust ledger.TrustSet) ledger.Store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "ledger.db"), trust)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
