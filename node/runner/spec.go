package runner

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/p2pjobs/p2pnode/node/client"

	"github.com/p2pjobs/p2pnode/node/schedule"
	"github.com/p2pjobs/p2pnode/node/series"
	"github.com/p2pjobs/p2pnode/protocols"
	"github.com/p2pjobs/p2pnode/protocols/pb"
)

// ErrModule means the series' module cannot be loaded.
var ErrModule = errors.New("runner: module")

// FromSpec turns a parsed spec into a series: it reads the module (a file,
// or one of builtins for "builtin:<name>"), expands the sweep and reads
// each job's inputs. Everything the user got wrong fails here, before any
// worker is asked for anything.
func FromSpec(spec *series.Spec, builtins map[string][]byte) (*client.Series, error) {
	var module []byte
	if name, ok := strings.CutPrefix(spec.Module, series.BuiltinPrefix); ok {
		module = builtins[name]
		if module == nil {
			return nil, fmt.Errorf("%w: no builtin module %q", ErrModule, name)
		}
	} else if spec.Executor == "wasm" {
		data, err := os.ReadFile(spec.Path(spec.Module))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrModule, err)
		}
		if len(data) > protocols.MaxModuleSize {
			return nil, fmt.Errorf("%w: %s is %d bytes, over the %d-byte limit", ErrModule, spec.Module, len(data), protocols.MaxModuleSize)
		}
		module = data
	}
	strat, err := schedule.ParseStrategy(spec.Strategy)
	if err != nil {
		return nil, err
	}
	jobs, err := spec.Expand()
	if err != nil {
		return nil, err
	}
	var stdin []byte
	if spec.StdinFile != "" {
		if stdin, err = os.ReadFile(spec.Path(spec.StdinFile)); err != nil {
			return nil, fmt.Errorf("runner: stdin_file: %w", err)
		}
	} else if spec.Stdin != "" {
		stdin = []byte(spec.Stdin)
	}
	s := &client.Series{
		ID: spec.Name, Executor: spec.Executor, Module: module, MaxPrice: spec.MaxPrice, Strategy: strat,
		Retries: spec.Retries, MaxWorkers: spec.Workers,
		Resources: &pb.Resources{MemoryBytes: spec.Resources.MemoryBytes, TimeoutMs: uint32(spec.Resources.Timeout / time.Millisecond),
			MaxOutputBytes: spec.Resources.MaxOutputBytes},
		Jobs: make([]client.Job, len(jobs)),
	}
	cache := map[string][]byte{} // inputs shared by all jobs are read once
	for i, j := range jobs {
		job := client.Job{ID: j.ID, Params: j.Params, Args: j.Args, Env: j.Env, Stdin: stdin, Outputs: spec.Outputs}
		for _, p := range j.InputPaths {
			data, ok := cache[p]
			if !ok {
				if data, err = os.ReadFile(p); err != nil {
					return nil, fmt.Errorf("runner: input of %s: %w", j.ID, err)
				}
				cache[p] = data
			}
			job.Inputs = append(job.Inputs, &pb.File{Name: baseName(p), Data: data})
		}
		s.Jobs[i] = job
	}
	return s, nil
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
