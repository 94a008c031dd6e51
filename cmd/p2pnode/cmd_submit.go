package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/api"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/runner"
	"github.com/p2pjobs/p2pnode/node/series"
)

func init() { register(newSubmitCmd) }

type submitOptions struct {
	node      nodeOptions
	discovery string
	resume    bool
}

func newSubmitCmd(g *globalOptions) *cobra.Command {
	var o submitOptions
	cmd := &cobra.Command{
		Use:   "submit SERIES.yaml",
		Short: "Farm a series of jobs out to workers and collect the results",
		Long: `submit reads a series file (module, args template, parameter sweep, inputs,
outputs, resources, max price, strategy), asks workers for bids, spreads the
jobs over the bids, dispatches them, re-dispatches what fails and writes each
job's stdout, stderr and output files to <results>/<series>/<job>/, with a
summary.jsonl beside them.

If a node with the client role runs on this data directory, submit hands
the series to it; otherwise it runs a client node of its own for the
duration, using the same identity.

Exit codes: 0 all jobs done, 1 a job failed (each reason is printed),
2 bad series file or flags.`,
		Example: `  p2pnode submit sweep.yaml --bootstrap /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...
  p2pnode submit sweep.yaml --json | jq .
  p2pnode submit sweep.yaml --resume     # after Ctrl-C or a crash: run only what is not done`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSubmit(cmd.Context(), g, &o, cmd, args[0])
		},
	}
	o.node.AddFlags(cmd.Flags(), false)
	cmd.Flags().BoolVar(&o.resume, "resume", false, "skip the jobs results/<series>/summary.jsonl records as done (after an interrupted run)")
	cmd.Flags().StringVar(&o.discovery, "discovery", "", "how to find workers: authority (then the overlay if too few answer), dht, flood or all (default from config: authority)")
	_ = cmd.RegisterFlagCompletionFunc("discovery", cobra.FixedCompletions(client.DiscoveryModes, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func runSubmit(ctx context.Context, g *globalOptions, o *submitOptions, cmd *cobra.Command, specPath string) error {
	abs, err := filepath.Abs(specPath)
	if err != nil {
		return usageError{err}
	}
	// Check the file before touching the network: a typo is exit code 2.
	spec, err := series.Load(abs)
	if err != nil {
		return usageError{err}
	}
	if _, err := runner.FromSpec(spec, builtins()); err != nil {
		return usageError{err}
	}
	if o.discovery != "" {
		if _, err := client.ParseDiscovery(o.discovery); err != nil {
			return usageError{err}
		}
	}
	view := newSeriesView(cmd.OutOrStdout(), g.JSON)
	sock := filepath.Join(g.DataDir, node.SocketFile)
	var runErr error
	if api.Alive(sock) {
		if !g.JSON {
			fmt.Fprintf(cmd.OutOrStdout(), "handing the series to the node running on %s\n", g.DataDir)
			if o.discovery != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "p2pnode: --discovery is ignored: the running node uses its configured client.discovery")
			}
		}
		var remoteErr error // the node's own report of why the series failed
		runErr = api.Submit(ctx, sock, runner.SubmitRequest{SpecPath: abs, Resume: o.resume}, func(m runner.Message) {
			view.handle(m)
			if m.Kind == "error" {
				remoteErr = errors.New(m.Error)
			}
		})
		runErr = errors.Join(runErr, remoteErr)
	} else {
		n, _, closeAll, err := openNode(ctx, g, &o.node, cmd, func(c *node.Config) {
			if o.discovery != "" {
				c.Client.Discovery = o.discovery
			}
			c.Roles = []string{node.RoleClient}
			c.Listen = []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"}
		})
		if err != nil {
			return err
		}
		defer closeAll()
		if len(n.Authorities) == 0 {
			return usagef("no authority to find workers through: give --bootstrap /ip4/.../p2p/<peer ID> or set bootstrap in %s", filepath.Join(g.DataDir, node.ConfigFile))
		}
		_, runErr = n.RunSeries(ctx, runner.SubmitRequest{SpecPath: abs, Resume: o.resume}, builtins(), view.handle)
	}
	var nb *client.NoBidsError
	if errors.As(runErr, &nb) {
		if !g.JSON && view.bids == nil {
			view.bids = runner.BidsOf(nb.Candidates, nil, nb.Declines)
			view.printDeclines()
		}
		if len(nb.Declines) == 0 {
			return exitError{exitFailure, runErr}
		}
		return exitError{exitFailure, fmt.Errorf("%w; see the declines above for why", runErr)}
	}
	failed := view.summary()
	if runErr != nil {
		return runErr
	}
	if failed > 0 {
		return exitError{exitFailure, fmt.Errorf("%d of %d jobs failed", failed, len(view.lines))}
	}
	return nil
}
