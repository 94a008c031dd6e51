//go:build p2pnode_testhooks

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

// crashOptions arms the crash point named by crashEnv (crashpoint_env.go).

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
