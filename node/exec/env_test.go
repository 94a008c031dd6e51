package exec

import (
	"errors"
	"strings"
	"testing"

	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

func TestNeverPassed(t *testing.T) {
	for _, n := range []string{"LD_PRELOAD", "LD_LIBRARY_PATH", "ld_audit", "DYLD_INSERT_LIBRARIES", "PATH", "PYTHONPATH",
		"GCONV_PATH", "NODE_PATH", "GLIBC_TUNABLES", "BASH_ENV", "IFS", "PERL5OPT", "NODE_OPTIONS", "MALLOC_ARENA_MAX"} {
		if !NeverPassed(n) {
			t.Errorf("%s passes", n)
		}
	}
	for _, n := range []string{"SEED", "OMP_NUM_THREADS", "LANG", "PATHOLOGY"} {
		if NeverPassed(n) {
			t.Errorf("%s refused", n)
		}
	}
}

// TestExecEnv: only allowed names pass, loader and path variables never
// (even when allowed), and the refusal names the variable.
func TestExecEnv(t *testing.T) {
	allow := map[string]bool{"SEED": true, "LD_PRELOAD": true} // LD_PRELOAD as if a config slipped it in
	base := []string{"PATH=/usr/bin:/bin"}
	for _, c := range []struct {
		env  map[string]string
		code pb.ErrorCode // 0: accepted
		name string       // the name the error must mention
	}{
		{map[string]string{"SEED": "1"}, 0, ""},
		{map[string]string{"SEED": "1", "LD_PRELOAD": "./evil.so"}, pb.ErrorCode_ENV_REFUSED, "LD_PRELOAD"},
		{map[string]string{"PATH": "."}, pb.ErrorCode_ENV_REFUSED, "PATH"},
		{map[string]string{"OTHER": "x"}, pb.ErrorCode_ENV_REFUSED, "OTHER"},
		{map[string]string{"A=B": "x"}, pb.ErrorCode_BAD_REQUEST, ""},
		{map[string]string{"SEED": "a\x00b"}, pb.ErrorCode_BAD_REQUEST, "SEED"},
	} {
		out, err := execEnv(allow, base, c.env)
		if c.code == 0 {
			if err != nil || len(out) != 2 || out[1] != "SEED=1" {
				t.Errorf("%v: %q %v", c.env, out, err)
			}
			continue
		}
		if !errors.Is(err, protocols.Code(c.code)) || !strings.Contains(err.Error(), c.name) {
			t.Errorf("%v: %v, want %v naming %s", c.env, err, c.code, c.name)
		}
	}
	if err := CheckExecEnvAllow([]string{"SEED", "LD_PRELOAD"}); err == nil || !strings.Contains(err.Error(), "LD_PRELOAD") {
		t.Errorf("operator allowlist with LD_PRELOAD: %v", err)
	}
	if err := CheckExecEnvAllow([]string{"SEED", "OMP_NUM_THREADS"}); err != nil {
		t.Error(err)
	}
}

func TestWasmEnvBounded(t *testing.T) {
	if err := checkWasmEnv(map[string]string{"LD_PRELOAD": "x", "PATH": "y"}); err != nil {
		t.Errorf("wasm env is free: %v", err)
	}
	big := map[string]string{"A": strings.Repeat("x", MaxWasmEnvBytes)}
	if err := checkWasmEnv(big); !errors.Is(err, protocols.Code(pb.ErrorCode_LIMIT_EXCEEDED)) {
		t.Errorf("%v, want LIMIT_EXCEEDED", err)
	}
}
