package node

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestDefaultConfigFileLoads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := WriteDefaultConfig(p); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatalf("the file init writes does not load: %v", err)
	}
	if cfg.Worker.MaxMemory != DefaultConfig().Worker.MaxMemory {
		t.Fatalf("defaults lost: %+v", cfg.Worker)
	}
}

func TestConfigRejectsTyposAndBadValues(t *testing.T) {
	for name, body := range map[string]string{
		"unknown key":             "rolez: [worker]\n",
		"bad role":                "roles: [janitor]\n",
		"bad size":                "worker:\n  max_memory: lots\n",
		"bad dht mode":            "dht_mode: sideways\n",
		"wrong type":              "worker:\n  slots: many\n",
		"loader variable allowed": "worker:\n  exec_env: [SEED, LD_PRELOAD]\n",
		"path variable allowed":   "worker:\n  exec_env: [PYTHONPATH]\n",
		"output over a message":   "worker:\n  max_output: 1GiB\n",
		"bad disk size":           "worker:\n  max_disk: huge\n",
	} {
		p := filepath.Join(t.TempDir(), "config.yaml")
		os.WriteFile(p, []byte(body), 0o600)
		if _, err := LoadConfig(p); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", name, err)
		}
	}
	cfg, err := LoadConfig(filepath.Join(t.TempDir(), "absent.yaml"))
	if err != nil || len(cfg.Roles) == 0 {
		t.Fatalf("absent file: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{"512MiB": 512 << 20, "1GiB": 1 << 30, "64KB": 64000, "100": 100, "": 0} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"-1MiB", "1.5GiB", "MiB", "99999999999999999999GiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestIdentityPersistsAndRefusesOpenModes(t *testing.T) {
	p := filepath.Join(t.TempDir(), "identity.key")
	k1, err := LoadOrCreateIdentity(p)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	k2, err := LoadOrCreateIdentity(p)
	if err != nil || !k1.Equals(k2) {
		t.Fatalf("identity changed: %v", err)
	}
	os.Chmod(p, 0o644)
	if _, err := LoadOrCreateIdentity(p); err == nil {
		t.Fatal("world-readable key accepted")
	}
}

func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	d1, err := OpenDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenDataDir(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	d1.Close()
	d2, err := OpenDataDir(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	d2.Close()
}
