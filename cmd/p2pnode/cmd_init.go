package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/p2pjobs/p2pnode/node"
)

func init() { register(newInitCmd) }

func newInitCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the data directory: identity key (0600) and a commented config file",
		Long: `init creates the data directory (--data-dir, default ~/.config/p2pnode or
$P2PNODE_DATA) with a persisted Ed25519 identity and a commented config.yaml.
It never overwrites an existing identity or config. The peer ID it prints is
this node's identity and ledger account.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dd, err := node.OpenDataDir(g.DataDir)
			if err != nil {
				return err
			}
			defer dd.Close()
			key, err := node.LoadOrCreateIdentity(dd.Join(node.IdentityFile))
			if err != nil {
				return err
			}
			cfg := dd.Join(node.ConfigFile)
			created := false
			if _, err := os.Stat(cfg); errors.Is(err, fs.ErrNotExist) {
				if err := node.WriteDefaultConfig(cfg); err != nil {
					return err
				}
				created = true
			}
			id, _ := peerIDOf(key)
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "data directory: %s\npeer ID:        %s\nconfig:         %s", dd.Path, id, cfg)
			if created {
				fmt.Fprint(out, " (created)")
			}
			fmt.Fprintln(out)
			return nil
		},
	}
}
