package main

import (
	"github.com/spf13/cobra"
)

// newNodeCmd is the root command: with --role it runs a node.
func newNodeCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "p2pnode",
		Short: "A peer-to-peer job market on libp2p",
		Long: `p2pnode runs a node of a peer-to-peer job market. Clients ask workers for
bids on a series of jobs, farm the jobs out, collect results and pay in points.
Authorities are the superpeers where clients and workers meet.

Exit codes: 0 success, 1 failure (e.g. a job failed), 2 bad usage or input.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	return cmd
}
