package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/p2pjobs/p2pnode/node"
	"github.com/p2pjobs/p2pnode/node/api"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/runner"
	"github.com/p2pjobs/p2pnode/node/viz"
	"github.com/p2pjobs/p2pnode/scripts/wasm"
)

// nodeOptions are the flags that shape a node; shared by the root command
// and submit (which may start a node of its own).
type nodeOptions struct {
	Roles        []string
	Listen       []string
	Announce     []string
	Bootstrap    []string
	Events       string
	Metrics      string
	HTTP         string
	Slots        int
	Price        uint64
	DHTMode      string
	Reachability string
	ReadyFile    string
}

func (o *nodeOptions) AddFlags(f *pflag.FlagSet, withRole bool) {
	if withRole {
		f.StringSliceVar(&o.Roles, "role", nil, "roles: authority, worker, client (comma-separated to combine)")
		f.StringArrayVar(&o.Listen, "listen", nil, "multiaddr to listen on (repeatable; default all interfaces, random TCP and QUIC ports)")
		f.StringArrayVar(&o.Announce, "announce", nil, "public multiaddr to advertise (repeatable; authorities behind a fixed address)")
		f.StringVar(&o.Metrics, "metrics", "", "serve Prometheus /metrics on host:port")
		f.StringVar(&o.HTTP, "http", "", "serve the live view of this node (visualiser and state) on [host]:port; the host defaults to 127.0.0.1")
		f.IntVar(&o.Slots, "slots", 0, "worker: concurrent jobs (0 = number of CPUs)")
		f.Uint64Var(&o.Price, "price", 0, "worker: price per job in points")
		f.StringVar(&o.DHTMode, "dht-mode", "", "DHT mode: auto, server or client")
		f.StringVar(&o.Reachability, "reachability", "", "force reachability: auto, public or private")
		f.StringVar(&o.ReadyFile, "ready-file", "", "write the node's peer ID and addresses as JSON to this file once it is up")
	}
	f.StringArrayVar(&o.Bootstrap, "bootstrap", nil, "authority multiaddr ending in /p2p/<peer ID> (repeatable); these are the trust roots")
	f.StringVar(&o.Events, "events", "", `event log file ("" = <data-dir>/events.jsonl, "off" = none)`)
}

// apply puts flags that were given over the config file's values.
func (o *nodeOptions) apply(cmd *cobra.Command, cfg *node.Config) {
	f := cmd.Flags()
	if f.Changed("role") {
		var roles []string
		for _, r := range o.Roles {
			roles = append(roles, strings.TrimSpace(r))
		}
		cfg.Roles = roles
	}
	if f.Changed("listen") {
		cfg.Listen = o.Listen
	}
	if f.Changed("announce") {
		cfg.Announce = o.Announce
	}
	if f.Changed("bootstrap") {
		cfg.Bootstrap = o.Bootstrap
	}
	if f.Changed("events") {
		cfg.Events = o.Events
	}
	if f.Changed("metrics") {
		cfg.Metrics = o.Metrics
	}
	if f.Changed("http") {
		cfg.HTTP = o.HTTP
	}
	if f.Changed("slots") {
		cfg.Worker.Slots = o.Slots
	}
	if f.Changed("price") {
		cfg.Worker.PricePerJob = o.Price
	}
	if f.Changed("dht-mode") {
		cfg.DHTMode = o.DHTMode
	}
	if f.Changed("reachability") {
		cfg.NAT.Reachability = o.Reachability
	}
}

func newNodeCmd(g *globalOptions) *cobra.Command {
	var o nodeOptions
	cmd := &cobra.Command{
		Use:   "p2pnode --role authority|worker|client [flags]",
		Short: "A peer-to-peer job market on libp2p",
		Long: `p2pnode runs a node of a peer-to-peer job market. Clients ask workers for
bids on a series of jobs, farm the jobs out, collect results and pay in points.
Authorities are the superpeers where clients and workers meet: registry, DHT
anchor, relay for nodes behind NAT, and notary of the points ledger.

With --role, p2pnode runs a node until interrupted (Ctrl-C).

Exit codes: 0 success, 1 failure (e.g. a job failed), 2 bad usage or input.`,
		Example: `  p2pnode demo                          # one authority, 4 workers, a 50-job sweep on loopback
  p2pnode init                          # data directory, identity and config file
  p2pnode --role authority --listen /ip4/0.0.0.0/tcp/4001 --announce /ip4/203.0.113.7/tcp/4001
  p2pnode --role worker --bootstrap /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...
  p2pnode submit sweep.yaml --bootstrap /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("role") {
				return cmd.Help()
			}
			return runNode(cmd.Context(), g, &o, cmd)
		},
	}
	o.AddFlags(cmd.Flags(), true)
	return cmd
}

// openNode locks the data directory, loads its config with flags on top,
// and starts a node. The returned close function stops everything.
func openNode(ctx context.Context, g *globalOptions, o *nodeOptions, cmd *cobra.Command, edit func(*node.Config)) (*node.Node, *node.DataDir, func() error, error) {
	dd, err := node.OpenDataDir(g.DataDir)
	if err != nil {
		if errors.Is(err, node.ErrLocked) {
			return nil, nil, nil, fmt.Errorf("%w (is a node running? stop it, or use another --data-dir)", err)
		}
		return nil, nil, nil, err
	}
	fail := func(err error) (*node.Node, *node.DataDir, func() error, error) {
		dd.Close()
		if errors.Is(err, node.ErrConfig) {
			err = usageError{err}
		}
		return nil, nil, nil, err
	}
	cfgPath := g.Config
	if cfgPath == "" {
		cfgPath = dd.Join(node.ConfigFile)
	}
	cfg, err := node.LoadConfig(cfgPath)
	if err != nil {
		return fail(err)
	}
	o.apply(cmd, &cfg)
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return fail(err)
	}
	key, err := node.LoadOrCreateIdentity(dd.Join(node.IdentityFile))
	if err != nil {
		return fail(err)
	}
	logger := newLogger(g)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var evopts []events.Option
	if cfg.Metrics != "" {
		evopts = append(evopts, events.WithObserver(events.NewMetrics(reg).Observe))
	}
	id, _ := peerIDOf(key)
	var evlog *events.Log
	if cfg.Events == "off" && cfg.Metrics != "" {
		evlog = events.New(nil, id, cfg.RoleString(), evopts...)
	}
	if cfg.Events != "off" {
		path := eventsPath(cfg, dd)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fail(err)
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fail(fmt.Errorf("event log: %w", err))
		}
		evlog = events.New(f, id, cfg.RoleString(), evopts...)
	}
	// libp2p's metrics (resource-manager traces, swarm, identify, relay)
	// cost CPU on every stream and a few MiB of label sets: only when
	// someone scrapes them.
	var nreg prometheus.Registerer
	if cfg.Metrics != "" {
		nreg = reg
	}
	n, err := node.New(ctx, cfg, key, append([]node.Option{node.WithEvents(evlog), node.WithLogger(logger), node.WithRegisterer(nreg),
		node.WithModuleCache(cmp.Or(cfg.Worker.ModuleCache, dd.Join(node.ModuleDir))), node.WithJobDir(dd.Join(node.JobDir)), node.WithLedger(dd.Join(node.LedgerFile))}, crashOptions()...)...)
	if err != nil {
		_ = evlog.Close()
		return fail(err)
	}
	var metricsSrv *http.Server
	if cfg.Metrics != "" {
		ln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			_ = n.Close()
			_ = evlog.Close()
			return fail(fmt.Errorf("metrics: %w", err))
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = metricsSrv.Serve(ln) }()
		logger.Info("metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	}
	closeAll := func() error {
		var errs []error
		if metricsSrv != nil {
			errs = append(errs, metricsSrv.Close())
		}
		errs = append(errs, n.Close(), evlog.Close(), dd.Close())
		return errors.Join(errs...)
	}
	return n, dd, closeAll, nil
}

func runNode(ctx context.Context, g *globalOptions, o *nodeOptions, cmd *cobra.Command) error {
	n, dd, closeAll, err := openNode(ctx, g, o, cmd, nil)
	if err != nil {
		return err
	}
	defer closeAll()
	srv, err := api.Listen(dd.Join(node.SocketFile), backend{n})
	if err != nil {
		return err
	}
	defer srv.Close()
	out := cmd.OutOrStdout()
	var liveURL string
	fmt.Fprintf(out, "p2pnode %s: %s %s\n", node.Version, n.Cfg.RoleString(), n.ID())
	for _, a := range n.Addrs() {
		fmt.Fprintf(out, "  listening on %s\n", a)
	}
	if n.Cfg.HTTP != "" {
		addr, _ := n.Cfg.HTTPAddr() // validated
		vctx, vcancel := context.WithCancel(ctx)
		v, err := viz.StartOptions(vctx, viz.Options{Addr: addr, Sources: []string{eventsPath(n.Cfg, dd)},
			State: func() any { return n.Live() }})
		if err != nil {
			vcancel()
			return fmt.Errorf("live view: %w", err)
		}
		defer func() { vcancel(); <-v.Done() }() // the page's server stops before the node closes
		fmt.Fprintf(out, "  live view on %s\n", v.URL())
		liveURL = v.URL()
	}
	if o.ReadyFile != "" {
		if err := writeReady(o.ReadyFile, n, liveURL); err != nil {
			return err
		}
	}
	<-ctx.Done()
	fmt.Fprintln(out, "p2pnode: shutting down")
	return nil
}

// Ready is what --ready-file holds: scripts (the demo, the NAT lab) wait
// for it instead of parsing output.
type Ready struct {
	PeerID string   `json:"peer_id"`
	Addrs  []string `json:"addrs"`
	Pid    int      `json:"pid"`
	HTTP   string   `json:"http,omitempty"` // the live view's URL (--http)
}

func writeReady(path string, n *node.Node, liveURL string) error {
	r := Ready{PeerID: n.ID().String(), Pid: os.Getpid(), HTTP: liveURL}
	for _, a := range n.Addrs() {
		r.Addrs = append(r.Addrs, a.String())
	}
	data, _ := json.Marshal(r)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// backend adapts a node to the local API.
type backend struct{ n *node.Node }

func (b backend) Status() any                 { return b.n.Status() }
func (b backend) Client() *client.Client      { return b.n.Client }
func (b backend) Builtins() map[string][]byte { return builtins() }
func (b backend) Ledger() api.Ledger {
	if b.n.LedgerStore() == nil {
		return nil
	}
	return nodeLedger{b.n} // cmd_ledger.go
}

func builtins() map[string][]byte {
	return map[string][]byte{"pi": wasm.Pi, "trivial": wasm.Trivial}
}

func newLogger(g *globalOptions) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.LogLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func (b backend) ObserveSeries(m runner.Message) { b.n.ObserveSeries(m) }

// eventsPath is where the node's event log goes.
func eventsPath(cfg node.Config, dd *node.DataDir) string {
	return cmp.Or(cfg.Events, dd.Join(node.EventsFile))
}
