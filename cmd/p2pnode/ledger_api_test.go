package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2pjobs/p2pnode/node/api"
)

// TestLedgerCommandsOnRunningNode: with an authority and a client running
// as processes, `p2pnode ledger mint|balance|history|export|verify` work on
// their data directories through the nodes' local API (the nodes own the
// stores), and the direct-store path still works once they stop.
func TestLedgerCommandsOnRunningNode(t *testing.T) {
	auth := newCrashProc(t, "authority", "", "--role", "authority")
	auth.start()
	cl := newCrashProc(t, "client", "", "--role", "client", "--bootstrap", auth.ready.Addrs[0])
	cl.start()
	run := func(want int, args ...string) string {
		t.Helper()
		out, code := p2pnode(t, args...)
		if code != want {
			t.Fatalf("p2pnode %v: exit %d, want %d\n%s", args, code, want, out)
		}
		return out
	}
	balance := func() api.BalanceInfo {
		t.Helper()
		var bi api.BalanceInfo
		out := run(0, "ledger", "balance", "--json", "--data-dir", cl.dir)
		if err := json.Unmarshal([]byte(out), &bi); err != nil {
			t.Fatalf("balance --json: %v\n%s", err, out)
		}
		return bi
	}
	if bi := balance(); bi.Balance != 0 || bi.Account != cl.ready.PeerID || bi.Home != auth.ready.PeerID {
		t.Fatalf("balance before the mint: %+v", bi)
	}
	out := run(0, "ledger", "mint", "--to", cl.ready.PeerID, "--amount", "500", "--data-dir", auth.dir)
	if !strings.Contains(out, "minted 500 points for "+cl.ready.PeerID) {
		t.Fatalf("mint: %s", out)
	}
	if bi := balance(); bi.Balance != 500 { // balance claims what was minted
		t.Fatalf("balance after the mint: %+v", bi)
	}
	hist := run(0, "ledger", "history", "--json", "--data-dir", cl.dir)
	var last HistoryLine
	for _, l := range strings.Split(strings.TrimSpace(hist), "\n") {
		if err := json.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("history line %q: %v", l, err)
		}
	}
	if last.Kind != "transfer_in" || last.Amount != 500 || last.Balance != 500 || last.Notary != auth.ready.PeerID {
		t.Fatalf("last history line %+v", last)
	}
	if out := run(0, "ledger", "history", "--data-dir", auth.dir); !strings.Contains(out, "mint") || !strings.Contains(out, "transfer_out") {
		t.Fatalf("authority history:\n%s", out)
	}
	file := filepath.Join(t.TempDir(), "ledger.export")
	run(0, "ledger", "export", "-o", file, "--data-dir", auth.dir)
	if out := run(0, "ledger", "verify", file); !strings.Contains(out, "conserved (minted 500 = balances 500") {
		t.Fatalf("verify of the export: %s", out)
	}
	if out := run(0, "ledger", "verify", auth.dir); !strings.Contains(out, "conserved") {
		t.Fatalf("verify of the running authority: %s", out)
	}
	if out := run(1, "ledger", "mint", "--to", auth.ready.PeerID, "--amount", "5", "--data-dir", cl.dir); !strings.Contains(out, "only an authority mints") {
		t.Fatalf("mint on a client: %s", out)
	}
	// Stopped: the same commands read the stores directly.
	cl.stop()
	auth.stop()
	if bi := balance(); bi.Balance != 500 {
		t.Fatalf("balance from the store: %+v", bi)
	}
	run(0, "ledger", "mint", "--to", cl.ready.PeerID, "--amount", "1", "--data-dir", auth.dir)
	if out := run(0, "ledger", "verify", auth.dir); !strings.Contains(out, "minted 501") {
		t.Fatalf("verify after an offline mint: %s", out)
	}
}
