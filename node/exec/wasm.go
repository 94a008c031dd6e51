package exec

import (
	"bytes"
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// DefaultMaxModules is how many compiled modules a Wasm executor keeps.
const DefaultMaxModules = 64

// maxMemoryPages is the runtime-wide ceiling (4 GiB, the wasm32 maximum);
// per-job caps are enforced below it by capAllocator.
const maxMemoryPages = 65536

var errJobTimeout = protocols.Errorf(pb.ErrorCode_JOB_TIMEOUT, "exec: wall-clock limit reached")

// WasmOption configures NewWasm.
type WasmOption func(*wasmConfig)

type wasmConfig struct {
	cacheDir   string
	memory     uint64
	timeout    time.Duration
	maxOutput  uint64
	disk       uint64
	maxFiles   int
	maxModules int
	realClocks bool
	scratch    string
}

// WithCacheDir keeps wazero's compilation cache on disk in dir, so a
// restarted worker does not recompile the modules it has seen.
func WithCacheDir(dir string) WasmOption { return func(c *wasmConfig) { c.cacheDir = dir } }

// WithDefaultMemory sets the memory cap of jobs that leave it at zero.
func WithDefaultMemory(bytes uint64) WasmOption { return func(c *wasmConfig) { c.memory = bytes } }

// WithDefaultTimeout sets the wall-clock limit of jobs that leave it at zero.
func WithDefaultTimeout(d time.Duration) WasmOption { return func(c *wasmConfig) { c.timeout = d } }

// WithDefaultMaxOutput sets the output cap of jobs that leave it at zero.
func WithDefaultMaxOutput(bytes uint64) WasmOption {
	return func(c *wasmConfig) { c.maxOutput = bytes }
}

// WithDefaultDisk sets the disk quota (bytes, files) of jobs that leave it
// at zero.
func WithDefaultDisk(bytes uint64, files int) WasmOption {
	return func(c *wasmConfig) { c.disk, c.maxFiles = bytes, files }
}

// WithScratchDir puts job working directories under dir (default: the
// system temp directory). A tmpfs makes jobs with files much cheaper: on
// ext4 the mkdir and file creation cost about 1.5 ms per job.
func WithScratchDir(dir string) WasmOption { return func(c *wasmConfig) { c.scratch = dir } }

// WithMaxModules bounds the LRU of compiled modules.
func WithMaxModules(n int) WasmOption { return func(c *wasmConfig) { c.maxModules = n } }

// WithDeterministicClocks gives guests wazero's fake clocks and a fixed
// random source instead of the host's (reproducible runs; sleeps return at
// once).
func WithDeterministicClocks() WasmOption { return func(c *wasmConfig) { c.realClocks = false } }

// Wasm runs WASI preview 1 modules with wazero. One runtime serves all jobs;
// compiled modules are cached by content hash in a bounded LRU. Safe for
// concurrent use.
type Wasm struct {
	cfg   wasmConfig
	rt    wazero.Runtime
	cache wazero.CompilationCache
	base  wazero.ModuleConfig

	mu      sync.Mutex
	modules map[[32]byte]*list.Element // guarded by mu; values are *wasmModule
	lru     *list.List                 // guarded by mu; front is most recent
	pruneMu sync.Mutex                 // one pruneDiskCache at a time
	closed  bool                       // guarded by mu
}

type wasmModule struct {
	hash     [32]byte
	compiled wazero.CompiledModule
	minMem   uint64 // bytes of the exported memory's minimum
	refs     int    // guarded by Wasm.mu: runs using compiled
	evicted  bool   // guarded by Wasm.mu: close when refs drops to 0
}

// NewWasm creates a wasm executor.
func NewWasm(opts ...WasmOption) (*Wasm, error) {
	cfg := wasmConfig{
		memory:     DefaultMemoryBytes,
		timeout:    DefaultTimeout,
		maxOutput:  DefaultMaxOutputBytes,
		disk:       DefaultDiskBytes,
		maxFiles:   DefaultMaxFiles,
		maxModules: DefaultMaxModules,
		realClocks: true,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.maxModules < 1 {
		cfg.maxModules = 1
	}
	var cache wazero.CompilationCache
	if cfg.cacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(cfg.cacheDir)
		if err != nil {
			return nil, fmt.Errorf("exec: compilation cache: %w", err)
		}
		cache = c
	} else {
		cache = wazero.NewCompilationCache()
	}
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCompilationCache(cache).
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(maxMemoryPages))
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		cache.Close(ctx)
		return nil, fmt.Errorf("exec: wasi: %w", err)
	}
	base := wazero.NewModuleConfig().WithStartFunctions().WithName("")
	if cfg.realClocks {
		base = base.WithSysWalltime().WithSysNanotime().WithSysNanosleep().WithRandSource(rand.Reader)
	}
	w := &Wasm{
		cfg:     cfg,
		rt:      rt,
		cache:   cache,
		base:    base,
		modules: make(map[[32]byte]*list.Element),
		lru:     list.New(),
	}
	w.pruneDiskCache() // a flood before a restart
	return w, nil
}

// pruneDiskCache keeps in the on-disk compilation cache no more files
// than the memory cache keeps modules, the newest. wazero never removes
// what it wrote there, and any peer may push modules (no bid needed):
// modules differing by one byte would fill the worker's disk. A module
// whose file is removed while in memory only recompiles after a restart.
func (w *Wasm) pruneDiskCache() {
	if w.cfg.cacheDir == "" {
		return
	}
	w.pruneMu.Lock()
	defer w.pruneMu.Unlock()
	type entry struct {
		path string
		mod  time.Time
	}
	var files []entry
	_ = filepath.WalkDir(w.cfg.cacheDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasSuffix(p, ".tmp") { // .tmp: being written
			return nil
		}
		if info, err := d.Info(); err == nil {
			files = append(files, entry{p, info.ModTime()})
		}
		return nil
	})
	if len(files) <= w.cfg.maxModules {
		return
	}
	slices.SortFunc(files, func(a, b entry) int { return b.mod.Compare(a.mod) })
	for _, f := range files[w.cfg.maxModules:] {
		_ = os.Remove(f.path)
	}
}

// Name implements Executor.
func (w *Wasm) Name() string { return "wasm" }

// HasModule implements Executor.
func (w *Wasm) HasModule(hash [32]byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.modules[hash]
	return ok
}

// AddModule implements Executor. The module must be a WASI command: it
// exports _start, and imports only wasi_snapshot_preview1 functions.
func (w *Wasm) AddModule(ctx context.Context, module []byte) ([32]byte, error) {
	hash := sha256.Sum256(module)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return hash, protocols.Errorf(pb.ErrorCode_SHUTTING_DOWN, "exec: executor closed")
	}
	if el, ok := w.modules[hash]; ok {
		w.lru.MoveToFront(el)
		w.mu.Unlock()
		return hash, nil
	}
	w.mu.Unlock()

	// Compile outside the lock; a concurrent AddModule of the same bytes
	// may compile twice, and the loser is closed below.
	compiled, err := w.rt.CompileModule(ctx, module)
	w.pruneDiskCache() // compiled, it is on disk, even if refused below
	if err != nil {
		if ctx.Err() != nil {
			return hash, ctx.Err()
		}
		return hash, protocols.Errorf(pb.ErrorCode_MODULE_INVALID, "exec: %v", err)
	}
	m := &wasmModule{hash: hash, compiled: compiled}
	if err := checkCommand(compiled, &m.minMem); err != nil {
		compiled.Close(ctx)
		return hash, err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		compiled.Close(ctx)
		return hash, protocols.Errorf(pb.ErrorCode_SHUTTING_DOWN, "exec: executor closed")
	}
	if el, ok := w.modules[hash]; ok {
		compiled.Close(ctx)
		w.lru.MoveToFront(el)
		return hash, nil
	}
	w.modules[hash] = w.lru.PushFront(m)
	for w.lru.Len() > w.cfg.maxModules {
		w.evictLocked(w.lru.Back())
	}
	return hash, nil
}

func checkCommand(c wazero.CompiledModule, minMem *uint64) error {
	if _, ok := c.ExportedFunctions()["_start"]; !ok {
		return protocols.Errorf(pb.ErrorCode_MODULE_INVALID, "exec: module does not export _start (not a WASI command)")
	}
	for _, f := range c.ImportedFunctions() {
		if mod, name, _ := f.Import(); mod != wasi_snapshot_preview1.ModuleName {
			return protocols.Errorf(pb.ErrorCode_MODULE_INVALID, "exec: module imports %s.%s; only %s is provided",
				mod, name, wasi_snapshot_preview1.ModuleName)
		}
	}
	if len(c.ImportedMemories()) > 0 {
		return protocols.Errorf(pb.ErrorCode_MODULE_INVALID, "exec: module imports a memory")
	}
	for _, m := range c.ExportedMemories() {
		*minMem = max(*minMem, uint64(m.Min())*pageSize)
	}
	return nil
}

func (w *Wasm) evictLocked(el *list.Element) {
	m := w.lru.Remove(el).(*wasmModule)
	delete(w.modules, m.hash)
	m.evicted = true
	if m.refs == 0 {
		m.compiled.Close(context.Background())
	}
}

func (w *Wasm) acquire(hash [32]byte) (*wasmModule, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, protocols.Errorf(pb.ErrorCode_SHUTTING_DOWN, "exec: executor closed")
	}
	el, ok := w.modules[hash]
	if !ok {
		return nil, protocols.Errorf(pb.ErrorCode_MODULE_MISSING, "exec: module %x is not cached", hash[:8])
	}
	w.lru.MoveToFront(el)
	m := el.Value.(*wasmModule)
	m.refs++
	return m, nil
}

func (w *Wasm) release(m *wasmModule) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m.refs--
	if m.refs == 0 && m.evicted {
		m.compiled.Close(context.Background())
	}
}

// Run implements Executor.
func (w *Wasm) Run(ctx context.Context, job Job) (Result, error) {
	start := time.Now()
	if err := validateFiles(&job); err != nil {
		return Result{}, err
	}
	memLimit := job.MemoryBytes
	if memLimit == 0 {
		memLimit = w.cfg.memory
	}
	memLimit = min(memLimit/pageSize*pageSize, maxMemoryPages*pageSize)
	timeout := job.Timeout
	if timeout <= 0 {
		timeout = w.cfg.timeout
	}
	maxOut := job.MaxOutputBytes
	if maxOut == 0 {
		maxOut = w.cfg.maxOutput
	}
	if job.DiskBytes == 0 {
		job.DiskBytes = w.cfg.disk
	}
	if job.MaxFiles == 0 {
		job.MaxFiles = w.cfg.maxFiles
	}

	m, err := w.acquire(job.ModuleHash)
	if err != nil {
		return Result{}, err
	}
	defer w.release(m)
	if m.minMem > memLimit {
		return Result{}, protocols.Errorf(pb.ErrorCode_JOB_MEMORY,
			"exec: module needs %d bytes of memory at start; the cap is %d", m.minMem, memLimit)
	}

	runCtx, cancelTimeout := context.WithTimeoutCause(ctx, timeout, errJobTimeout)
	defer cancelTimeout()
	runCtx, cancel := context.WithCancelCause(runCtx)
	defer cancel(nil)

	budget := &outputBudget{left: maxOut, cancel: cancel}
	stdout := &cappedWriter{budget: budget}
	stderr := &cappedWriter{budget: budget}
	cfg, err := w.moduleConfig(&job, stdout, stderr)
	if err != nil {
		return Result{}, err
	}
	var dir string
	var quota *diskQuota
	// A job without files still gets an (empty, read-only, in-memory) root,
	// so that a write there is refused by the guard and explained, not met
	// with EBADF for want of any directory.
	guard := &outputGuard{FS: &sysfs.ReadFS{FS: &sysfs.AdaptFS{FS: embed.FS{}}}, declared: job.Outputs}
	if len(job.Inputs) > 0 || len(job.Outputs) > 0 {
		if err := checkInputsFit(&job); err != nil {
			return Result{}, err
		}
		if dir, err = prepareDir(w.cfg.scratch, &job); err != nil {
			return Result{}, err
		}
		defer removeDir(dir)
		b, n := inputUsage(&job)
		quota = &diskQuota{cancel: cancel, maxBytes: int64(min(job.DiskBytes, 1<<62)), maxFiles: job.MaxFiles, bytes: b, files: n}
		guard.FS = quotaFS{FS: sandboxFS{sysfs.DirFS(dir)}, q: quota}
	}
	cfg = cfg.WithFSConfig(wazero.NewFSConfig().(sysfs.FSConfig).WithSysFSMount(guard, "/"))

	alloc := &capAllocator{limit: memLimit}
	exitCode, runErr := w.instantiateAndStart(experimental.WithMemoryAllocator(runCtx, alloc), m.compiled, cfg, alloc)
	res := Result{ExitCode: exitCode, Stdout: stdout.buf, Stderr: stderr.buf}

	switch cause := context.Cause(runCtx); {
	case cause == error(errOutputTooLarge) || cause == error(errDiskQuota) || cause != nil && (runErr != nil || ctx.Err() != nil):
		// The run was stopped from outside: our timer, the output cap or
		// the caller. (A guest that finished just as the timer fired keeps
		// its result.)
		res.Duration = time.Since(start)
		var re *protocols.RemoteError
		if errors.As(cause, &re) {
			return res, cause
		}
		return res, fmt.Errorf("exec: run stopped: %w", cause)
	case alloc.exceeded && (runErr != nil || exitCode != 0):
		res.Duration = time.Since(start)
		return res, protocols.Errorf(pb.ErrorCode_JOB_MEMORY,
			"exec: the guest tried to grow its memory past the cap of %d bytes", memLimit)
	case guard.undeclaredErr() != nil:
		// Before a trap: a guest whose write was refused often panics.
		res.Duration = time.Since(start)
		return res, guard.undeclaredErr()
	case runErr != nil:
		res.Duration = time.Since(start)
		return res, protocols.Errorf(pb.ErrorCode_JOB_TRAP, "exec: %s", firstLine(runErr.Error()))
	}
	if dir != "" {
		res.Outputs, err = collectOutputs(dir, job.Outputs, budget.left, res.ExitCode)
		if err != nil {
			res.Duration = time.Since(start)
			return res, err
		}
	}
	res.Duration = time.Since(start)
	return res, nil
}

// instantiateAndStart runs the module's _start. A proc_exit gives an exit
// code, not an error; runErr is a trap or the module being closed by ctx.
func (w *Wasm) instantiateAndStart(ctx context.Context, c wazero.CompiledModule, cfg wazero.ModuleConfig, alloc *capAllocator) (int32, error) {
	mod, err := w.rt.InstantiateModule(ctx, c, cfg)
	if err != nil {
		return exitOrErr(err)
	}
	defer mod.Close(context.Background())
	if alloc.exceeded {
		return 0, protocols.Errorf(pb.ErrorCode_JOB_MEMORY, "exec: module minimum memory exceeds the cap")
	}
	_, err = mod.ExportedFunction("_start").Call(ctx)
	return exitOrErr(err)
}

func exitOrErr(err error) (int32, error) {
	if err == nil {
		return 0, nil
	}
	var ee *sys.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case sys.ExitCodeContextCanceled, sys.ExitCodeDeadlineExceeded:
			return 0, err
		}
		return int32(ee.ExitCode()), nil
	}
	return 0, err
}

func (w *Wasm) moduleConfig(job *Job, stdout, stderr *cappedWriter) (wazero.ModuleConfig, error) {
	argv := make([]string, 0, 1+len(job.Args))
	argv = append(argv, "job")
	for _, a := range job.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: argument contains NUL")
		}
		argv = append(argv, a)
	}
	cfg := w.base.WithArgs(argv...).WithStdout(stdout).WithStderr(stderr)
	if len(job.Stdin) > 0 {
		cfg = cfg.WithStdin(bytes.NewReader(job.Stdin))
	}
	if len(job.Env) > 0 {
		if err := checkWasmEnv(job.Env); err != nil {
			return nil, err
		}
		keys := slices.Sorted(maps.Keys(job.Env))
		for _, k := range keys {
			cfg = cfg.WithEnv(k, job.Env[k])
		}
	}
	return cfg, nil
}

// Close implements Executor. Runs in flight are stopped (their module is
// closed under them).
func (w *Wasm) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	w.modules = nil
	w.lru.Init()
	w.mu.Unlock()
	err := w.rt.Close(ctx)
	return errors.Join(err, w.cache.Close(ctx))
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
