package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/api"
)

func init() { register(newStatusCmd) }

// statusOptions are the flags of `p2pnode status`.
type statusOptions struct {
	Timeout time.Duration
}

func (o *statusOptions) AddFlags(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Second, "how long to wait for the node's answer")
}

func newStatusCmd(g *globalOptions) *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show a running node's reachability, addresses, authorities and connections",
		Long: `status asks the node running on --data-dir (over its local API socket) how it
stands: reachability (public, private or unknown; from AutoNAT or forced by
config), the addresses it listens on, how peers observe it, the relay (circuit)
addresses it holds on authorities, every authority it knows (and, for a worker,
whether it is registered there), and whether each connection is direct or
relayed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), filepath.Join(g.DataDir, node.SocketFile), o, g.JSON, cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func runStatus(ctx context.Context, sock string, o statusOptions, asJSON bool, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var st node.Status
	if err := api.GetStatus(ctx, sock, &st); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	renderStatus(out, &st)
	return nil
}

// renderStatus writes st as a few tables for a person.
func renderStatus(out io.Writer, st *node.Status) {
	reach := st.Reachability
	if st.Forced {
		reach += " (forced by config)"
	}
	fmt.Fprintf(out, "peer ID       %s\n", st.PeerID)
	fmt.Fprintf(out, "roles         %s\n", strings.Join(st.Roles, ","))
	fmt.Fprintf(out, "reachability  %s\n", reach)
	if st.Workers > 0 {
		fmt.Fprintf(out, "registered    %d workers\n", st.Workers)
	}
	if st.Relay.On {
		fmt.Fprintf(out, "relay service on: %d of %d reservations held\n", st.Relay.Reservations, st.Relay.Max)
	} else {
		fmt.Fprintln(out, "relay service off")
	}
	list := func(title string, xs []string) {
		for i, x := range xs {
			if i == 0 {
				fmt.Fprintf(out, "%-13s %s\n", title, x)
			} else {
				fmt.Fprintf(out, "%-13s %s\n", "", x)
			}
		}
	}
	list("listen", st.Listen)
	list("observed", st.Observed)
	list("relay addrs", st.RelayAddrs)
	list("reachable", st.Reachable)
	list("unreachable", st.Unreachable)
	if len(st.RelayAddrs) == 0 && st.Reachability != "public" && !hasRole(st.Roles, node.RoleAuthority) {
		fmt.Fprintln(out, "              (no relay reservation yet: peers behind other NATs cannot reach this node)")
	}

	fmt.Fprintln(out, "\nauthorities")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PEER\tSOURCE\tCONNECTED\tREGISTERED\tRELAY\tSEES US AT")
	for _, a := range st.Authorities {
		reg := "-"
		if a.Registered != nil {
			reg = "no"
			if *a.Registered {
				reg = "yes (" + time.Since(a.LastReg).Round(time.Second).String() + " ago)"
			}
		}
		relay := "no"
		if a.Relay {
			relay = "reserved"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", shortID(a.ID), a.Source, a.Connected, reg, relay, dash(a.Observed))
	}
	if len(st.Authorities) == 0 {
		fmt.Fprintln(tw, "  (none: start with --bootstrap /ip4/…/p2p/<authority ID>)")
	}
	_ = tw.Flush()

	fmt.Fprintf(out, "\nconnections (%d)\n", len(st.Peers))
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PEER\tPATH\tDIR\tKIND\tADDRESS")
	for _, p := range st.Peers {
		kind := p.Agent
		if p.Authority {
			kind = "authority"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", shortID(p.ID), p.Conn, p.Dir, dash(kind), p.Addr)
	}
	_ = tw.Flush()
}

func hasRole(roles []string, r string) bool {
	for _, x := range roles {
		if x == r {
			return true
		}
	}
	return false
}

func shortID(id string) string {
	if len(id) > 12 {
		return "…" + id[len(id)-10:]
	}
	return id
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
