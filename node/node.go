package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/p2pjobs/p2pnode/ledger"
	"github.com/p2pjobs/p2pnode/node/authority"
	"github.com/p2pjobs/p2pnode/node/client"
	"github.com/p2pjobs/p2pnode/node/events"
	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/node/ledgersvc"
	"github.com/p2pjobs/p2pnode/node/overlay"
	"github.com/p2pjobs/p2pnode/node/reach"
	"github.com/p2pjobs/p2pnode/node/worker"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/prometheus/client_golang/prometheus"
)

// Node is a running p2pjobs node.
type Node struct {
	Host        host.Host
	DHT         *dht.IpfsDHT
	Key         crypto.PrivKey
	Cfg         Config
	Log         *events.Log
	Authorities []peer.AddrInfo // from --bootstrap: the trust roots

	Authority *authority.Service // nil unless the role is on
	Worker    *worker.Service
	Overlay   *overlay.Service // the worker's neighbours and solicitations; nil unless a worker
	Client    *client.Client
	Ledger    *ledgersvc.Service // the notary service; nil unless an authority with a ledger
	Account   *ledgersvc.Account // the node's points; nil unless a worker or client with a ledger
	Reach     *reach.Service     // connection reversal behind a symmetric NAT (node/reach)

	executors []exec.Executor
	tmpJobDir string        // a job directory of our own (no data dir given), removed at Close
	relay     *relayService // authority: the circuit relay v2 service (relay.go)
	series    seriesTracker // client: the series run through the local API (live.go)
	totals    struct {      // the ledger totals last summed for the live view (live.go)
		mu   sync.Mutex
		last *LedgerTotals // guarded by mu
		at   time.Time     // guarded by mu
	}
	book   *authorityBook // every authority known: bootstrap and learned
	nat    natState
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	ledgerStore ledger.Store // ledger.go; closed after the ledger services
}

type options struct {
	log        *events.Log
	reg        prometheus.Registerer
	moduleDir  string
	jobDir     string
	logger     *slog.Logger
	workerOpt  []worker.Option
	clientOpt  []client.Option
	overlayOpt []overlay.Option
	ledgerPath string
	accountOpt []ledgersvc.AccountOption
}

// Option configures New.
type Option func(*options)

// WithEvents sets the event log (owned by the caller).
func WithEvents(l *events.Log) Option { return func(o *options) { o.log = l } }

// WithRegisterer exports libp2p and p2pjobs metrics to reg.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.reg = r } }

// WithJobDir puts job working directories under dir (normally
// <data-dir>/jobs); it is emptied at start.
func WithJobDir(dir string) Option { return func(o *options) { o.jobDir = dir } }

// WithModuleCache keeps compiled WASM modules on disk in dir.
func WithModuleCache(dir string) Option { return func(o *options) { o.moduleDir = dir } }

// WithLogger sets the operator log.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithWorkerOptions passes options to the worker service (tests).
func WithWorkerOptions(w ...worker.Option) Option {
	return func(o *options) { o.workerOpt = append(o.workerOpt, w...) }
}

// WithOverlayOptions passes options to the worker's overlay (tests).
func WithOverlayOptions(v ...overlay.Option) Option {
	return func(o *options) { o.overlayOpt = append(o.overlayOpt, v...) }
}

// WithClientOptions passes options to the client (tests).
func WithClientOptions(c ...client.Option) Option {
	return func(o *options) { o.clientOpt = append(o.clientOpt, c...) }
}

// ParseBootstrap parses authority multiaddrs; each must end in /p2p/<id>.
func ParseBootstrap(addrs []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("%w: --bootstrap %q: %w", ErrConfig, s, err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: --bootstrap %q must end in /p2p/<peer ID>: %w", ErrConfig, s, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// WorkerNamespace is the DHT rendezvous key under which workers with an
// executor advertise themselves.
func WorkerNamespace(executor string) string { return "p2pjobs/worker/" + executor }

// New starts a node with cfg's roles.
func New(ctx context.Context, cfg Config, key crypto.PrivKey, opts ...Option) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{logger: slog.Default()}
	for _, f := range opts {
		f(&o)
	}
	auths, err := ParseBootstrap(cfg.Bootstrap)
	if err != nil {
		return nil, err
	}
	self, err := peer.IDFromPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("node: identity: %w", err)
	}
	book := newAuthorityBook(self, auths)
	// Only the authorities' view of our address decides how our NAT maps:
	// any other peer could lie to turn our hole punching off.
	rev := reach.New(reach.WithLog(o.log), reach.WithTrusted(func(p peer.ID) bool {
		src := book.source(p)
		return src == SourceBootstrap || src == SourceSettings
	}))
	h, err := newHost(&cfg, key, book, o.reg, rev)
	if err != nil {
		return nil, err
	}
	nctx, cancel := context.WithCancel(context.Background())
	n := &Node{Host: h, Key: key, Cfg: cfg, Log: o.log, Authorities: auths, book: book, logger: o.logger, ctx: nctx, cancel: cancel, Reach: rev}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	h.Network().Notify(n.connNotifiee())
	if cfg.Has(RoleAuthority) {
		if n.relay, err = startRelay(h, &cfg, o.reg); err != nil {
			return nil, err
		}
	}
	// The connections to authorities (registration, discovery, relay,
	// ledger) are worth more than a DHT peer's when the connection manager
	// trims: tagged, not protected, since learned authorities may be anyone.
	tagAuthority := func(a peer.AddrInfo) { h.ConnManager().TagPeer(a.ID, "p2pjobs-authority", 100) }
	book.subscribe(tagAuthority)
	for _, a := range book.list() {
		tagAuthority(a)
	}
	if err := n.watchHost(); err != nil {
		return nil, err
	}
	kickAutoRelay(h, &cfg)
	if err := rev.Start(h); err != nil {
		return nil, err
	}

	// dht.go: who serves the DHT, and how the worker fallback survives
	// the authorities. Bootstrap from every authority known, learned ones too.
	n.DHT, err = dht.New(dhtHost{h}, dht.ProtocolPrefix(protocols.DHTPrefix), dht.Mode(dhtMode(&cfg, auths)),
		dht.BootstrapPeersFunc(book.list))
	if err != nil {
		return nil, fmt.Errorf("node: dht: %w", err)
	}

	if err := n.openLedger(&o); err != nil {
		return nil, err
	}
	if cfg.Has(RoleAuthority) {
		var peers []ma.Multiaddr
		for _, s := range append(append([]string{}, cfg.Authority.Peers...), cfg.Bootstrap...) {
			if a, err := ma.NewMultiaddr(s); err == nil {
				peers = append(peers, a)
			}
		}
		n.Authority = authority.New(h, o.log,
			authority.WithTTL(cfg.Authority.TTL, cfg.Authority.Heartbeat),
			authority.WithMaxWorkers(cfg.Authority.MaxWorkers), authority.WithPeers(peers))
	}
	if cfg.Has(RoleWorker) {
		if err := n.startWorker(ctx, &o); err != nil {
			return nil, err
		}
	}
	if cfg.Has(RoleClient) {
		copts := []client.Option{client.WithAuthorities(auths), client.WithFinder(dhtFinder{n})}
		if cfg.Client.Discovery != "" {
			copts = append(copts, client.WithDiscovery(cfg.Client.Discovery))
		}
		if n.Account != nil {
			copts = append(copts, client.WithPayer(n.Account))
		}
		if cfg.Client.HangFactor > 0 || cfg.Client.HangGrace > 0 {
			copts = append(copts, client.WithHangDetection(cfg.Client.HangFactor, cfg.Client.HangGrace))
		}
		copts = append(copts, n.reputation(&o)...) // reputation.go
		copts = append(copts, o.clientOpt...)
		n.Client = client.New(h, key, o.log, copts...)
		// Discover through every authority the node learns of, too.
		n.book.subscribe(n.Client.AddAuthority)
		for _, a := range n.book.list() {
			n.Client.AddAuthority(a)
		}
	}

	// Join the network: connect to the authorities and fill the DHT's
	// routing table. Failures are not fatal: services retry on their own.
	for _, a := range auths {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		if err := h.Connect(cctx, a); err != nil {
			o.logger.Warn("authority unreachable; will retry", "authority", a.ID, "err", err)
		}
		ccancel()
	}
	_ = n.DHT.Bootstrap(nctx)
	n.readyLedger(ctx)
	n.Log.Emit(events.Event{Kind: events.Started, Attrs: map[string]any{"addrs": addrStrings(n.Addrs())}})
	return n, nil
}

func (n *Node) startWorker(ctx context.Context, o *options) error {
	cfg := &n.Cfg
	maxMem, _ := ParseSize(cfg.Worker.MaxMemory)
	maxOut, _ := ParseSize(cfg.Worker.MaxOutput)
	maxDisk, _ := ParseSize(cfg.Worker.MaxDisk)
	maxOut = cmp.Or(maxOut, exec.DefaultMaxOutputBytes)
	maxDisk = cmp.Or(maxDisk, exec.DefaultDiskBytes)
	maxFiles := cmp.Or(cfg.Worker.MaxFiles, exec.DefaultMaxFiles)
	jobDir := o.jobDir
	if jobDir == "" {
		d, err := os.MkdirTemp("", "p2pnode-jobs-")
		if err != nil {
			return fmt.Errorf("node: job directory: %w", err)
		}
		jobDir, n.tmpJobDir = d, d
	}
	if err := exec.CleanJobDirs(jobDir); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	for _, name := range cfg.Worker.Executors {
		switch name {
		case "wasm":
			wopts := []exec.WasmOption{exec.WithScratchDir(filepath.Join(jobDir, "wasm")),
				exec.WithDefaultMaxOutput(maxOut), exec.WithDefaultDisk(maxDisk, maxFiles)}
			if err := os.MkdirAll(filepath.Join(jobDir, "wasm"), 0o700); err != nil {
				return fmt.Errorf("node: job directory: %w", err)
			}
			if o.moduleDir != "" {
				wopts = append(wopts, exec.WithCacheDir(o.moduleDir))
			}
			w, err := exec.NewWasm(wopts...)
			if err != nil {
				return fmt.Errorf("node: wasm executor: %w", err)
			}
			n.executors = append(n.executors, w)
		case "exec":
			if len(cfg.Worker.ExecAllow) == 0 {
				return fmt.Errorf("%w: executor exec needs worker.exec_allow (name: /path/to/program)", ErrConfig)
			}
			e, err := exec.NewExec(cfg.Worker.ExecAllow, exec.WithExecScratchDir(filepath.Join(jobDir, "exec")),
				exec.WithExecEnv(cfg.Worker.ExecEnv...), exec.WithExecDefaultMaxOutput(maxOut),
				exec.WithExecDefaults(maxMem, maxDisk, maxFiles, cmp.Or(cfg.Worker.ExecProcs, exec.DefaultMaxProcs)))
			if err != nil {
				return fmt.Errorf("node: exec executor: %w", err)
			}
			o.logger.Info("exec executor isolation", "isolation", e.Isolation())
			n.executors = append(n.executors, e)
		default:
			return fmt.Errorf("%w: unknown executor %q (wasm, exec)", ErrConfig, name)
		}
	}
	slots := cfg.Worker.Slots
	if slots == 0 {
		slots = runtime.NumCPU()
	}
	wopts := append([]worker.Option{worker.WithSlots(slots), worker.WithPrice(cfg.Worker.PricePerJob),
		worker.WithMaxMemory(maxMem), worker.WithCeilings(maxOut, maxDisk, maxFiles),
		worker.WithMaxTimeout(cmp.Or(cfg.Worker.MaxTimeout, time.Hour)), worker.WithMaxQueue(cfg.Worker.MaxQueue), worker.WithAuthorities(n.book.list()),
		worker.WithAgent("p2pnode/" + Version),
		worker.WithOnAuthority(func(a peer.AddrInfo) { n.book.add(a, SourceSettings) }),
		worker.WithPricing(cfg.Worker.PricePerSecond, cfg.Worker.LoadSurcharge), worker.WithDeny(cfg.Worker.denied()...)}, o.workerOpt...)
	if n.Account != nil {
		horizon := cfg.Worker.SettleHorizon
		if horizon <= 0 {
			horizon = 10 * time.Second
		}
		wopts = append(wopts, worker.WithPayee(n.Account), worker.WithEscrowCheck(n.Account, horizon))
	}
	w, err := worker.New(n.Host, n.Key, n.executors, n.Log, wopts...)
	if err != nil {
		return err
	}
	n.Worker = w
	n.Overlay = overlay.New(n.Host, w, n.Log, append([]overlay.Option{
		overlay.WithSampler(overlay.AuthoritySampler{H: n.Host, Authorities: n.book.list}),
		overlay.WithSettings(w.Settings)}, o.overlayOpt...)...)
	// Register with every authority the node learns of, however learned.
	n.book.subscribe(func(a peer.AddrInfo) { w.AddAuthority(a) })
	for _, a := range n.book.list() { // learned while the worker started
		w.AddAuthority(a)
	}
	// Advertise on the DHT too, so clients find workers when no authority
	// answers (dht.go).
	for _, e := range n.executors {
		n.wg.Go(func() { n.advertise(WorkerNamespace(e.Name())) })
	}
	return nil
}

// Addrs returns the node's full multiaddrs, each ending in /p2p/<id>.
func (n *Node) Addrs() []ma.Multiaddr {
	ai := peer.AddrInfo{ID: n.Host.ID(), Addrs: n.Host.Addrs()}
	out, _ := peer.AddrInfoToP2pAddrs(&ai)
	return out
}

func addrStrings(as []ma.Multiaddr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

// ConnKind says whether a connection is direct or through a relay.
func ConnKind(c network.Conn) string {
	if c.Stat().Limited || strings.Contains(c.RemoteMultiaddr().String(), "/p2p-circuit") {
		return "relayed"
	}
	return "direct"
}

func (n *Node) connNotifiee() network.Notifiee {
	return &network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			dir := "out"
			if c.Stat().Direction == network.DirInbound {
				dir = "in"
			}
			n.Log.Emit(events.Event{Kind: events.Connected, Peer: c.RemotePeer().String(), Conn: ConnKind(c), Dir: dir,
				Attrs: map[string]any{"addr": c.RemoteMultiaddr().String()}})
		},
		DisconnectedF: func(nw network.Network, c network.Conn) {
			n.Log.Emit(events.Event{Kind: events.Disconnected, Peer: c.RemotePeer().String(), Conn: ConnKind(c)})
			if nw.Connectedness(c.RemotePeer()) != network.Connected {
				n.forgetObserved(c.RemotePeer()) // status.go
			}
		},
	}
}

// Close stops every service and the host.
func (n *Node) Close() error {
	var errs []error
	if n.Overlay != nil {
		errs = append(errs, n.Overlay.Close())
	}
	if n.Worker != nil {
		errs = append(errs, n.Worker.Close())
	}
	if n.Authority != nil {
		errs = append(errs, n.Authority.Close())
	}
	errs = append(errs, n.closeLedger())
	errs = append(errs, n.relay.Close())
	if n.Reach != nil {
		errs = append(errs, n.Reach.Close())
	}
	n.cancel()
	n.wg.Wait()
	if n.DHT != nil {
		errs = append(errs, n.DHT.Close())
	}
	errs = append(errs, n.Host.Close())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, e := range n.executors {
		errs = append(errs, e.Close(ctx))
	}
	if n.tmpJobDir != "" {
		errs = append(errs, os.RemoveAll(n.tmpJobDir))
	}
	n.Log.Emit(events.Event{Kind: events.Stopped})
	return errors.Join(errs...)
}
