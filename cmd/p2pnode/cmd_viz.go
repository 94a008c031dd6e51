package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/p2pjobs/p2pnode/node/viz"
)

func init() { register(newVizCmd) }

// vizOptions are the flags of p2pnode viz.
type vizOptions struct {
	Listen string
	Open   bool
}

func (o *vizOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.Listen, "listen", viz.DefaultAddr, "address to serve on (port 0 picks a free one)")
	f.BoolVar(&o.Open, "open", false, "open the page in a browser, if one is found")
}

func newVizCmd(g *globalOptions) *cobra.Command {
	o := &vizOptions{}
	cmd := &cobra.Command{
		Use:   "viz LOGDIR|FILE...",
		Short: "Replay and follow event logs in a browser",
		Long: `viz serves a web page that replays nodes' event logs (JSON lines, written with
--events or by "p2pnode demo") and follows them while they grow.

Give it log files, or directories whose *.jsonl files are read; logs of many
nodes are merged by time. The page has two views: "network" (overlay
neighbour links; a ring flashes when a node's neighbours change) and
"traffic" (connections, dashed when relayed, and every message as an arrow
labelled with its protocol, red when it failed). Step with < and > (or the
arrow keys), jump with the slider, play at a chosen speed; hover or click a
node for its peer ID, addresses, jobs and points balance at that moment;
the errors button lists every error event.

The page's files are embedded in the binary; nothing is fetched from the
internet. It serves on 127.0.0.1 by default and runs until interrupted.`,
		Example: `  # replay a demo's logs (the demo prints their directory)
  p2pnode viz /tmp/p2pnode-demo-1234/logs

  # a few nodes' logs, on a fixed port, opening a browser
  p2pnode viz --listen 127.0.0.1:8080 --open authority.jsonl worker-1.jsonl`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runViz(cmd.Context(), o, args, cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// runViz serves the visualiser until ctx is cancelled.
func runViz(ctx context.Context, o *vizOptions, sources []string, out io.Writer) error {
	s, err := viz.StartOptions(ctx, viz.Options{
		Addr:    o.Listen,
		Sources: sources,
		Logf:    func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
	})
	if errors.Is(err, viz.ErrNoSource) {
		return usageError{err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Serving the visualiser at %s (Ctrl-C to stop)\n", s.URL())
	if o.Open {
		if err := openBrowser(s.URL()); err != nil {
			fmt.Fprintf(os.Stderr, "p2pnode: cannot open a browser: %v\n", err)
		}
	}
	return s.Wait()
}

// openBrowser starts the desktop's browser on url, without waiting for it.
func openBrowser(url string) error {
	var name string
	var args []string
	switch {
	case os.Getenv("BROWSER") != "":
		name = os.Getenv("BROWSER")
	case runtime.GOOS == "darwin":
		name = "open"
	case runtime.GOOS == "windows":
		name, args = "rundll32", []string{"url.dll,FileProtocolHandler"}
	default:
		name = "xdg-open"
	}
	if _, err := exec.LookPath(name); err != nil {
		return err
	}
	c := exec.Command(name, append(args, url)...)
	if err := c.Start(); err != nil {
		return err
	}
	go c.Wait()
	return nil
}
