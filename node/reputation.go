package node

import (
	"path/filepath"

	"github.com/p2pjobs/p2pnode/node/client"
)

// reputation gives the client its record of workers' past outcomes
// (client.Reputation), kept beside the ledger in the data directory
// (<data-dir>/reputation.json) so that it outlives the process; a node
// without a ledger file keeps it in memory. A damaged file is logged and
// replaced: reputation is advice, not state a client must not lose.
func (n *Node) reputation(o *options) []client.Option {
	if o.ledgerPath == "" {
		return nil
	}
	r, err := client.OpenReputation(filepath.Join(filepath.Dir(o.ledgerPath), client.ReputationFile))
	if err != nil {
		n.logger.Warn("worker reputation record unreadable; starting afresh", "err", err)
	}
	return []client.Option{client.WithReputation(r)}
}
