package exec

import (
	"fmt"
	"slices"
	"strings"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// MaxWasmEnvBytes bounds a WASM job's environment (names, values and one
// "=" and NUL each, as WASI lays them out in guest memory).
const MaxWasmEnvBytes = 64 << 10

// neverPassed are variables that change what a program loads or where it
// looks for code or files: the dynamic loader's, the shells', the script
// interpreters'. A client setting them would run its own code under an
// allowlisted program, so they are refused even when the operator lists
// them. Any name starting with LD_ or DYLD_, or ending in PATH, is refused
// too (LD_PRELOAD, LD_LIBRARY_PATH, PYTHONPATH, GCONV_PATH, ...).
var neverPassed = map[string]bool{
	"PATH": true, "IFS": true, "ENV": true, "BASH_ENV": true, "SHELLOPTS": true, "BASHOPTS": true,
	"PS4": true, "CDPATH": true, "GLIBC_TUNABLES": true, "MALLOC_CHECK_": true, "MALLOC_PERTURB_": true,
	"LOCALDOMAIN": true, "RES_OPTIONS": true, "HOSTALIASES": true, "NLSPATH": true, "LOCPATH": true,
	"TMPDIR": true, "HOME": true, "PYTHONHOME": true, "PYTHONSTARTUP": true, "PYTHONINSPECT": true,
	"PERL5LIB": true, "PERLLIB": true, "PERL5OPT": true, "RUBYLIB": true, "RUBYOPT": true,
	"NODE_OPTIONS": true, "JAVA_TOOL_OPTIONS": true, "_JAVA_OPTIONS": true, "JDK_JAVA_OPTIONS": true,
	"CLASSPATH": true, "GODEBUG": true, "GOTRACEBACK": true, "GOMAXPROCS": true, "GOMEMLIMIT": true,
	"LUA_INIT": true, "TCLLIBPATH": true, "GIT_EXEC_PATH": true, "OPENSSL_CONF": true, "OPENSSL_ENGINES": true,
}

// NeverPassed reports whether name is a loader or path variable that no
// exec job may set, whatever worker.exec_env says.
func NeverPassed(name string) bool {
	u := strings.ToUpper(name)
	return neverPassed[u] || strings.HasPrefix(u, "LD_") || strings.HasPrefix(u, "DYLD_") ||
		strings.HasSuffix(u, "PATH") || strings.HasPrefix(u, "MALLOC_")
}

// CheckExecEnvAllow checks an operator's worker.exec_env list: names only,
// none of them a loader or path variable.
func CheckExecEnvAllow(names []string) error {
	for _, n := range names {
		if err := checkEnvName(n); err != nil {
			return err
		}
		if NeverPassed(n) {
			return fmt.Errorf("exec: worker.exec_env: %s is a loader or path variable and is never passed to programs", n)
		}
	}
	return nil
}

func checkEnvName(k string) error {
	if k == "" || strings.ContainsAny(k, "=\x00") {
		return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: bad environment variable name %q", k)
	}
	return nil
}

// execEnv builds an exec job's environment: the fixed base (PATH, HOME and
// TMPDIR set by the worker) and then the job's variables, each of which
// must be on allow and not a loader or path variable. The first refused
// name is an ENV_REFUSED error naming it, so nothing runs.
func execEnv(allow map[string]bool, base []string, env map[string]string) ([]string, error) {
	keys := make([]string, 0, len(env))
	for k, v := range env {
		if err := checkEnvName(k); err != nil {
			return nil, err
		}
		if strings.IndexByte(v, 0) >= 0 {
			return nil, protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: environment variable %s holds a NUL", k)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys) // the first refused name is the same every time
	out := append(make([]string, 0, len(base)+len(keys)), base...)
	for _, k := range keys {
		switch {
		case NeverPassed(k):
			return nil, protocols.Errorf(pb.ErrorCode_ENV_REFUSED,
				"exec: environment variable %s is a loader or path variable; no worker passes it to programs", k)
		case !allow[k]:
			return nil, protocols.Errorf(pb.ErrorCode_ENV_REFUSED,
				"exec: environment variable %s is not allowed by this worker (worker.exec_env)", k)
		}
		out = append(out, k+"="+env[k])
	}
	return out, nil
}

// checkWasmEnv bounds a WASM job's environment: any names pass (the guest
// is sandboxed), but not more than MaxWasmEnvBytes in all.
func checkWasmEnv(env map[string]string) error {
	n := 0
	for k, v := range env {
		if err := checkEnvName(k); err != nil {
			return err
		}
		if strings.IndexByte(v, 0) >= 0 {
			return protocols.Errorf(pb.ErrorCode_BAD_REQUEST, "exec: environment variable %s holds a NUL", k)
		}
		n += len(k) + len(v) + 2
	}
	if n > MaxWasmEnvBytes {
		return protocols.Errorf(pb.ErrorCode_LIMIT_EXCEEDED, "exec: environment of %d bytes over the %d-byte limit", n, MaxWasmEnvBytes)
	}
	return nil
}
