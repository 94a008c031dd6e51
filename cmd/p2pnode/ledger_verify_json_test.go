package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/ledger/storetest"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// `ledger verify --json` prints what it found as one JSON object (scripts
// and CI read it), not the sentence meant for a person.
func TestLedgerVerifyJSON(t *testing.T) {
	f := storetest.NewFixture(t, 100)
	f.Pay(t, f.Client, f.Worker, 30)
	var blocks []*pb.Block
	for _, o := range f.Outputs {
		blocks = append(blocks, o.Blocks...)
	}
	file := filepath.Join(t.TempDir(), "ledger.export")
	var exp bytes.Buffer
	if err := ledger.Export(&exp, blocks); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, exp.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runLedgerVerify(file, nil, true, &out); err != nil {
		t.Fatal(err)
	}
	var r struct {
		Chains, Blocks      int
		Conserved, Complete bool
		Minted, Balances    uint64
		Trusted             []string
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if !r.Conserved || !r.Complete || r.Minted != 100 || r.Balances != 100 || r.Chains != 3 || len(r.Trusted) != 1 || r.Trusted[0] != f.Auth.String() {
		t.Fatalf("verify --json: %+v", r)
	}
}
