package main

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"

	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// crashEnv names the crash point of the crash tests (ledger_crash_test.go):
// with P2PNODE_TEST_KILL_BEFORE_STORE=N the process SIGKILLs itself when the
// Nth block its home authority countersigned for it arrives, before the
// block is stored — the one moment a random kill rarely hits, which the
// account's resync exists for. Unset (always, outside those tests): no effect.
const crashEnv = "P2PNODE_TEST_KILL_BEFORE_STORE"

func crashOptions() []node.Option {
	n, err := strconv.Atoi(os.Getenv(crashEnv))
	if err != nil || n <= 0 {
		return nil
	}
	var seen atomic.Int64
	return []node.Option{node.WithLedgerAccountOptions(ledgersvc.WithBeforeStore(func(*pb.Block) {
		if seen.Add(1) == int64(n) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way; never store the block
		}
	}))}
}
