// Command p2pnode runs a node of the p2pjobs market (authority, worker,
// client), submits series to it, inspects its ledger and replays its event
// logs. This package parses flags and wires packages together; it holds no
// business logic.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/p2pjobs/p2pnode/node"

	jobexec "github.com/p2pjobs/p2pnode/node/exec"
)

// Exit codes, documented in --help.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and something failed (e.g. a job)
	exitUsage   = 2 // bad flags, bad files: nothing was done
)

// usageError marks errors caused by the user's input, so main can exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// globalOptions are the flags every sub-command shares.
type globalOptions struct {
	DataDir  string
	Config   string
	LogLevel string
	JSON     bool
}

// subcommands lets each cmd_*.go file add its command from init, so commands
// live in their own files (restic style) without editing this one.
var subcommands []func(*globalOptions) *cobra.Command

func register(f func(*globalOptions) *cobra.Command) { subcommands = append(subcommands, f) }

func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	root := newNodeCmd(g)
	root.PersistentFlags().StringVar(&g.DataDir, "data-dir", defaultDataDir(), "data directory (identity, config, ledger, events)")
	root.PersistentFlags().StringVar(&g.Config, "config", "", "config file (default <data-dir>/config.yaml)")
	root.PersistentFlags().StringVar(&g.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().BoolVar(&g.JSON, "json", false, "machine-readable JSON output")
	for _, f := range subcommands {
		root.AddCommand(f(g))
	}
	root.Version = node.FullVersion()
	root.SilenceUsage = true
	root.SilenceErrors = true
	return root
}

func defaultDataDir() string {
	if d := os.Getenv("P2PNODE_DATA"); d != "" {
		return d
	}
	if d, err := os.UserConfigDir(); err == nil {
		return d + "/p2pnode"
	}
	return ".p2pnode"
}

func main() {
	jobexec.MaybeRunJail() // this binary is also the exec executor's jail
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfiles := startProfiles() // profile.go
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	stopProfiles()
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(os.Stderr, "p2pnode:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailure
}

// exitError carries a specific exit code (e.g. submit: some jobs failed).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
