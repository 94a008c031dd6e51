//go:build !linux

package exec

import (
	"context"
	"errors"
	"os"
	"path/filepath"
)

// JailArg is the jail's sub-command; the jail exists only on Linux.
const JailArg = "__exec-jail"

// MaybeRunJail does nothing here: the exec executor needs Linux.
func MaybeRunJail() {}

// ExecOption configures NewExec.
type ExecOption func(*Exec)

// Exec is the exec executor; it needs Linux (cgroups, namespaces,
// Landlock) and is refused elsewhere rather than run unconfined.
type Exec struct{}

// NewExec fails: without Linux the executor cannot confine a program.
func NewExec(map[string]string, ...ExecOption) (*Exec, error) {
	return nil, errors.New("exec: the exec executor needs Linux (cgroups, namespaces, Landlock)")
}

// WithExecScratchDir, WithExecEnv, WithExecDefaults and WithExecDefaultMaxOutput exist for the build.
func WithExecScratchDir(string) ExecOption                 { return nil }
func WithExecEnv(...string) ExecOption                     { return nil }
func WithExecDefaults(uint64, uint64, int, int) ExecOption { return nil }
func WithExecDefaultMaxOutput(uint64) ExecOption           { return nil }

func (e *Exec) Name() string                                        { return "exec" }
func (e *Exec) HasModule([32]byte) bool                             { return true }
func (e *Exec) AddModule(context.Context, []byte) ([32]byte, error) { return [32]byte{}, nil }
func (e *Exec) Run(context.Context, Job) (Result, error) {
	return Result{}, errors.New("exec: needs Linux")
}
func (e *Exec) Close(context.Context) error { return nil }
func (e *Exec) Isolation() string           { return "none" }

// CleanJobDirs empties dir (creating it if needed).
func CleanJobDirs(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, en := range ents {
		if err := removeAllForced(filepath.Join(dir, en.Name())); err != nil {
			return err
		}
	}
	return nil
}
