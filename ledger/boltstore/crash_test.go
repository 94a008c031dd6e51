package boltstore_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/ledger/boltstore"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// TestHelperProcess is the child of TestCrashSafety: it keeps notarising
// transfers into a real bbolt file and prints each acknowledged (committed)
// seq of the authority's chain until it is killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("LEDGER_CRASH_HELPER") != "1" {
		t.Skip("helper process")
	}
	raw, _ := hex.DecodeString(os.Getenv("LEDGER_CRASH_KEY"))
	key, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	trust := ledger.NewTrustSet(id)
	s, err := boltstore.Open(os.Getenv("LEDGER_CRASH_DB"), trust)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := ledger.NewNotary(ledger.NotaryConfig{Key: key})
	var rs ledger.RestoreState
	if chain, err := s.Chain(id, 0, 0); err == nil {
		rs.Chains = append(rs.Chains, chain)
	}
	if err := n.Restore(rs); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if len(rs.Chains) == 0 {
		out, _ := n.Genesis(now)
		if err := s.Commit(out); err != nil {
			t.Fatal(err)
		}
	}
	to, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	toID, _ := peer.IDFromPrivateKey(to)
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		out, err := n.Mint(&pb.MintRequest{To: []byte(toID), Amount: 1, Reference: strconv.Itoa(i)}, id, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(out); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(w, out.Blocks[len(out.Blocks)-1].Seq) // acknowledged
		w.Flush()
	}
}

// TestCrashSafety SIGKILLs a process appending to a real bbolt file at
// random moments, reopens the file, verifies the chain and checks that
// every seq the process acknowledged is there.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	id, _ := peer.IDFromPrivateKey(key)
	raw, _ := crypto.MarshalPrivateKey(key)
	db := filepath.Join(t.TempDir(), "ledger.db")
	trust := ledger.NewTrustSet(id)
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
		cmd.Env = append(os.Environ(), "LEDGER_CRASH_HELPER=1", "LEDGER_CRASH_DB="+db, "LEDGER_CRASH_KEY="+hex.EncodeToString(raw))
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := make(chan uint64, 1<<16)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if v, err := strconv.ParseUint(strings.TrimSpace(sc.Text()), 10, 64); err == nil {
					acked <- v
				}
			}
			close(acked)
		}()
		// Wait for the first ack, then kill at a random moment.
		first, ok := <-acked
		if !ok {
			t.Fatal("helper acknowledged nothing")
		}
		time.Sleep(time.Duration(50+mrand.IntN(300)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		last := first
		for v := range acked {
			last = v
		}
		_ = cmd.Wait()
		s, err := boltstore.Open(db, trust)
		if err != nil {
			t.Fatal(err)
		}
		chain, err := s.Chain(id, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		st, err := ledger.VerifyChain(chain, trust)
		if err != nil {
			t.Fatalf("round %d: chain invalid after kill: %v", round, err)
		}
		if st.Seq < last {
			t.Fatalf("round %d: acknowledged seq %d lost (head %d)", round, last, st.Seq)
		}
		t.Logf("round %d: killed after ack %d; head %d, %d blocks verified", round, last, st.Seq, len(chain))
		s.Close()
	}
}
