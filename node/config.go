package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/p2pjobs/p2pnode/node/exec"
	"github.com/p2pjobs/p2pnode/protocols"
)

// Roles a node can take.
const (
	RoleAuthority = "authority"
	RoleWorker    = "worker"
	RoleClient    = "client"
)

// Config is a node's configuration: the config file, then flags on top.
type Config struct {
	Roles     []string `yaml:"roles"`
	Listen    []string `yaml:"listen"`    // multiaddrs to listen on
	Announce  []string `yaml:"announce"`  // public multiaddrs to advertise instead of the listen ones
	Bootstrap []string `yaml:"bootstrap"` // authority multiaddrs with /p2p/<id>: the trust roots
	DHTMode   string   `yaml:"dht_mode"`  // auto | server | client
	Events    string   `yaml:"events"`    // event log path; "" = <data-dir>/events.jsonl; "off"
	Metrics   string   `yaml:"metrics"`   // host:port for /metrics; "" = off
	HTTP      string   `yaml:"http"`      // [host]:port of the live view (visualiser + state); "" = off; host defaults to 127.0.0.1

	Worker    WorkerConfig    `yaml:"worker"`
	Authority AuthorityConfig `yaml:"authority"`
	Client    ClientConfig    `yaml:"client"`
	NAT       NATConfig       `yaml:"nat"`
	Ledger    LedgerConfig    `yaml:"ledger"`
}

// LedgerConfig configures a worker's or client's points account.
type LedgerConfig struct {
	// Home: peer ID of the bootstrap authority that opens and notarises
	// the account (named in its genesis). Default: the first --bootstrap.
	// Once the account exists its chain says where home is.
	Home string `yaml:"home"`
}

// ClientConfig configures the client role.
type ClientConfig struct {
	// Discovery is how workers are found: authority (then the overlay when
	// too few answer), dht, flood, or all.
	Discovery string `yaml:"discovery"`
	// HangFactor and HangGrace: a job sent to a worker is hung, and goes
	// to another worker, HangFactor times its expected wait (the bid's
	// per-job estimate × its place in the worker's queue / slots) plus
	// HangGrace after it was sent (defaults 4 and 10s). The first result
	// wins; the other is neither used nor acknowledged.
	HangFactor float64       `yaml:"hang_factor"`
	HangGrace  time.Duration `yaml:"hang_grace"`
}

// WorkerConfig configures the worker role.
type WorkerConfig struct {
	Slots       int    `yaml:"slots"`         // concurrent jobs; 0 = number of CPUs
	PricePerJob uint64 `yaml:"price_per_job"` // points per job (the minimum when price_per_second is set)
	// SettleHorizon: a client's escrow lock must outlive the worker's
	// first job of an award by this much, so the worker can file its
	// receipts before the client may take the points back (default 10s).
	SettleHorizon time.Duration     `yaml:"settle_horizon"`
	MaxMemory     string            `yaml:"max_memory"` // largest per-job memory, e.g. 512MiB
	MaxQueue      int               `yaml:"max_queue"`  // jobs accepted beyond the slots before declining
	Executors     []string          `yaml:"executors"`  // wasm (default); exec needs exec_allow
	ExecAllow     map[string]string `yaml:"exec_allow"` // exec executor: name -> absolute program path
	// ExecEnv names the environment variables exec jobs may set; loader
	// and path variables (LD_*, PATH, ...) are refused even if listed.
	ExecEnv []string `yaml:"exec_env"`
	// Ceilings every job runs under, whatever the client asks: output
	// (stdout, stderr and output files together), scratch disk (bytes and
	// files, inputs included), and processes per exec job.
	MaxOutput string `yaml:"max_output"`
	MaxDisk   string `yaml:"max_disk"`
	MaxFiles  int    `yaml:"max_files"`
	// MaxTimeout is the longest run time of any job.
	MaxTimeout time.Duration `yaml:"max_timeout"`
	ExecProcs  int           `yaml:"exec_procs"`
	// ModuleCache is where compiled WASM modules are kept ("" =
	// <data-dir>/modules). Workers on one machine may share one.
	ModuleCache string `yaml:"module_cache"`
	// PricePerSecond charges per estimated job-second; LoadSurcharge adds
	// that fraction of the price at full load; Deny lists refused clients.
	PricePerSecond float64  `yaml:"price_per_second"`
	LoadSurcharge  float64  `yaml:"load_surcharge"`
	Deny           []string `yaml:"deny"`
}

// AuthorityConfig configures the authority role.
type AuthorityConfig struct {
	TTL        time.Duration `yaml:"ttl"`         // registration lifetime without a heartbeat
	Heartbeat  time.Duration `yaml:"heartbeat"`   // interval pushed to workers
	MaxWorkers int           `yaml:"max_workers"` // registry size cap
	Peers      []string      `yaml:"peers"`       // other authorities, pushed to workers
	// Trust: peer IDs of other authorities whose ledger signatures this
	// authority accepts (transfers between accounts homed at each).
	Trust []string `yaml:"trust"`
	// Grant gives points to each new ledger account; off by default.
	Grant GrantConfig `yaml:"grant"`
	// DisputeWindow: an unacknowledged receipt is paid after this (default 10m).
	DisputeWindow time.Duration `yaml:"dispute_window"`
	// MinLockLifetime: the notary refuses an escrow lock that expires
	// sooner than this after it sees it (default 30s), so that a client
	// cannot take its points back before the worker could settle.
	MinLockLifetime time.Duration `yaml:"min_lock_lifetime"`
	// Relay limits for the circuit relay v2 service.
	RelayDuration     time.Duration `yaml:"relay_duration"`
	RelayData         int64         `yaml:"relay_data"`
	RelayReservations int           `yaml:"relay_reservations"`
	RelayCircuits     int           `yaml:"relay_circuits"`
}

// GrantConfig gives new ledger accounts points at registration: Amount
// (0: off), at most once per identity per PerIdentity (0: once ever) and at
// most MaxPerHour grants an hour in all (0: no cap).
type GrantConfig struct {
	Amount      uint64        `yaml:"amount"`
	PerIdentity time.Duration `yaml:"per_identity"`
	MaxPerHour  int           `yaml:"max_per_hour"`
}

// NATConfig configures reachability behaviour.
type NATConfig struct {
	Reachability string `yaml:"reachability"` // auto | public | private
	PortMap      bool   `yaml:"port_map"`     // UPnP / NAT-PMP
}

// DefaultConfig returns the defaults for the given roles.
func DefaultConfig() Config {
	return Config{
		Roles:   []string{RoleWorker},
		Listen:  []string{"/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"},
		DHTMode: "auto",
		Worker: WorkerConfig{
			PricePerJob: 1,
			MaxMemory:   "512MiB",
			MaxQueue:    10000,
			Executors:   []string{"wasm"},
			MaxOutput:   "4MiB",
			MaxDisk:     "64MiB",
			MaxFiles:    1024,
			ExecProcs:   64,
			MaxTimeout:  time.Hour,
		},
		Authority: AuthorityConfig{
			TTL:               90 * time.Second,
			Heartbeat:         30 * time.Second,
			MaxWorkers:        100000,
			RelayDuration:     10 * time.Minute,
			RelayData:         64 << 20,
			RelayReservations: 1024,
			RelayCircuits:     64,
		},
		NAT: NATConfig{Reachability: "auto"},
	}
}

// ErrConfig marks a bad configuration file or flag value.
var ErrConfig = errors.New("node: bad configuration")

// LoadConfig reads path over the defaults. A missing file gives the
// defaults; unknown keys are errors, so typos do not pass silently.
func LoadConfig(path string) (Config, error) {
	cfg := DefaultConfig()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	// A file of comments only (as init writes it) decodes to io.EOF: the
	// defaults stand.
	err = yaml.NewDecoder(bytes.NewReader(data), yaml.DisallowUnknownField()).Decode(&cfg)
	switch {
	case errors.Is(err, io.EOF):
		cfg = DefaultConfig() // the decoder may have zeroed fields before seeing no document
	case err != nil:
		return cfg, fmt.Errorf("%w: %s: %s", ErrConfig, path, yaml.FormatError(err, false, true))
	}
	return cfg, cfg.Validate()
}

// Validate checks values that the type system cannot.
func (c *Config) Validate() error {
	if len(c.Roles) == 0 {
		return fmt.Errorf("%w: no role (use --role authority|worker|client)", ErrConfig)
	}
	for _, r := range c.Roles {
		if r != RoleAuthority && r != RoleWorker && r != RoleClient {
			return fmt.Errorf("%w: unknown role %q (want authority, worker or client)", ErrConfig, r)
		}
	}
	if c.HTTP != "" {
		if _, err := c.HTTPAddr(); err != nil {
			return err
		}
		if c.Events == "off" {
			return fmt.Errorf("%w: http: the live view shows the node's event log: it needs events on", ErrConfig)
		}
	}
	switch c.DHTMode {
	case "", "auto", "server", "client":
	default:
		return fmt.Errorf("%w: dht_mode %q (want auto, server or client)", ErrConfig, c.DHTMode)
	}
	if c.Client.HangFactor < 0 || c.Client.HangGrace < 0 {
		return fmt.Errorf("%w: client.hang_factor and client.hang_grace must not be negative", ErrConfig)
	}
	switch c.Client.Discovery {
	case "", "authority", "dht", "flood", "all":
	default:
		return fmt.Errorf("%w: client.discovery %q (want authority, dht, flood or all)", ErrConfig, c.Client.Discovery)
	}
	switch c.NAT.Reachability {
	case "", "auto", "public", "private":
	default:
		return fmt.Errorf("%w: nat.reachability %q (want auto, public or private)", ErrConfig, c.NAT.Reachability)
	}
	if _, err := ParseSize(c.Worker.MaxMemory); err != nil {
		return fmt.Errorf("%w: worker.max_memory: %w", ErrConfig, err)
	}
	for key, v := range map[string]string{"max_output": c.Worker.MaxOutput, "max_disk": c.Worker.MaxDisk} {
		if _, err := ParseSize(v); err != nil {
			return fmt.Errorf("%w: worker.%s: %w", ErrConfig, key, err)
		}
	}
	if n, _ := ParseSize(c.Worker.MaxOutput); n > protocols.MaxJobMsg/2 {
		return fmt.Errorf("%w: worker.max_output %s over %d MiB (a result travels in one job message)", ErrConfig, c.Worker.MaxOutput, protocols.MaxJobMsg>>21)
	}
	if c.Worker.MaxFiles < 0 || c.Worker.ExecProcs < 0 || c.Worker.MaxTimeout < 0 {
		return fmt.Errorf("%w: worker.max_files, worker.exec_procs and worker.max_timeout must not be negative", ErrConfig)
	}
	if err := exec.CheckExecEnvAllow(c.Worker.ExecEnv); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.Worker.PricePerSecond < 0 || c.Worker.LoadSurcharge < 0 {
		return fmt.Errorf("%w: worker.price_per_second and worker.load_surcharge must not be negative", ErrConfig)
	}
	for _, d := range c.Worker.Deny {
		if _, err := peer.Decode(d); err != nil {
			return fmt.Errorf("%w: worker.deny %q: %w", ErrConfig, d, err)
		}
	}
	if c.Ledger.Home != "" {
		if _, err := peer.Decode(c.Ledger.Home); err != nil {
			return fmt.Errorf("%w: ledger.home %q: %w", ErrConfig, c.Ledger.Home, err)
		}
	}
	for _, t := range c.Authority.Trust {
		if _, err := peer.Decode(t); err != nil {
			return fmt.Errorf("%w: authority.trust %q: %w", ErrConfig, t, err)
		}
	}
	if c.Authority.Grant.MaxPerHour < 0 || c.Authority.DisputeWindow < 0 || c.Authority.MinLockLifetime < 0 {
		return fmt.Errorf("%w: authority.grant.max_per_hour, authority.dispute_window and authority.min_lock_lifetime must not be negative", ErrConfig)
	}
	if c.Worker.Slots < 0 || c.Worker.MaxQueue < 0 {
		return fmt.Errorf("%w: worker.slots and worker.max_queue must not be negative", ErrConfig)
	}
	return nil
}

// denied decodes Deny (checked by Validate).
func (w *WorkerConfig) denied() []peer.ID {
	var out []peer.ID
	for _, d := range w.Deny {
		if id, err := peer.Decode(d); err == nil {
			out = append(out, id)
		}
	}
	return out
}

// Has reports whether the node has role r.
func (c *Config) Has(r string) bool { return slices.Contains(c.Roles, r) }

// RoleString is the comma-joined role list ("worker,client").
func (c *Config) RoleString() string { return strings.Join(c.Roles, ",") }

// WriteDefaultConfig writes a commented default config file (p2pnode init).
func WriteDefaultConfig(path string) error {
	return os.WriteFile(path, []byte(defaultConfigYAML), 0o600)
}

const defaultConfigYAML = `# p2pnode configuration. Flags given on the command line override these.
# roles: [worker]               # authority, worker, client (several allowed)
# listen:                       # multiaddrs to listen on
#   - /ip4/0.0.0.0/tcp/4001
#   - /ip4/0.0.0.0/udp/4001/quic-v1
# announce: []                  # public multiaddrs (authorities behind a fixed address)
# bootstrap:                    # authorities; their peer IDs are this node's trust roots
#   - /dns4/authority.example.org/tcp/4001/p2p/12D3KooW...
# dht_mode: auto                # auto | server | client
# events: ""                    # event log ("" = <data-dir>/events.jsonl, "off" = none)
# metrics: ""                   # e.g. 127.0.0.1:9090 serves /metrics
# http: ""                      # e.g. 127.0.0.1:8080 serves the live view of this node
# worker:
#   slots: 0                    # concurrent jobs (0 = number of CPUs)
#   price_per_job: 1            # points per job
#   settle_horizon: 10s         # a client's escrow must outlive the first job by this much
#   price_per_second: 0         # points per estimated job-second (price_per_job stays the minimum)
#   load_surcharge: 0           # e.g. 0.5: +50 % when fully loaded
#   deny: []                    # client peer IDs refused (CLIENT_REFUSED)
#   max_memory: 512MiB          # largest memory a job may ask for
#   max_queue: 10000            # jobs accepted beyond the slots
#   executors: [wasm]           # add exec to run allow-listed programs
#   exec_allow: {}              # name: /absolute/path/to/program
#   exec_env: []                # variable names exec jobs may set (never LD_*, PATH, ...)
#   exec_procs: 64              # processes (and threads) per exec job
#   max_output: 4MiB            # stdout + stderr + output files per job, whatever the client asks
#   max_disk: 64MiB             # scratch disk per job (inputs included)
#   max_files: 1024             # files and directories per job
#   max_timeout: 1h             # longest run time of any job
#   module_cache: ""            # compiled WASM modules ("" = <data-dir>/modules; may be shared)
# authority:
#   ttl: 90s                    # a worker is dropped after this without a heartbeat
#   heartbeat: 30s
#   relay_duration: 10m         # circuit relay v2 limits per relayed connection
#   relay_data: 67108864
#   relay_reservations: 1024
#   relay_circuits: 64
#   trust: []                   # peer IDs of other authorities whose ledger signatures count
#   grant:                      # points for each new ledger account (off when amount is 0)
#     amount: 0
#     per_identity: 0s          # 0 = once per identity, ever
#     max_per_hour: 0           # 0 = no cap
#   dispute_window: 10m         # an unacknowledged receipt is paid after this
#   min_lock_lifetime: 30s      # the shortest escrow lock the notary accepts
# client:
#   discovery: authority        # authority | dht | flood | all
# ledger:
#   home: ""                    # peer ID of the bootstrap authority holding this node's account (default: the first)
# nat:
#   reachability: auto          # auto | public | private
#   port_map: false             # try UPnP / NAT-PMP
`

// ParseSize parses "512MiB", "64KB", "1GiB" or plain bytes.
func ParseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := uint64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	var n uint64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || fmt.Sprint(n) != s {
		return 0, fmt.Errorf("bad size %q (e.g. 512MiB)", s)
	}
	if n > (1<<63)/mult {
		return 0, fmt.Errorf("size %q too large", s)
	}
	return n * mult, nil
}

// HTTPAddr is the live view's listen address: c.HTTP with the host
// defaulting to 127.0.0.1 (":8080" and "8080" bind loopback only; another
// host is the operator's explicit choice).
func (c *Config) HTTPAddr() (string, error) {
	v := c.HTTP
	if !strings.Contains(v, ":") {
		v = ":" + v
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", fmt.Errorf("%w: http %q: want [host]:port: %w", ErrConfig, c.HTTP, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("%w: http %q: bad port", ErrConfig, c.HTTP)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
