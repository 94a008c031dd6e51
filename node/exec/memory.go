package exec

import (
	"github.com/tetratelabs/wazero/experimental"
)

const (
	pageSize    = 65536
	smallMemory = 1 << 20 // initial memories up to this size start on the Go heap
)

// capAllocator backs one guest's linear memory and enforces the job's
// memory cap. wazero's own limit (RuntimeConfig.WithMemoryLimitPages) is per
// runtime and baked in at compile time; an allocator is per instantiation,
// so one runtime and one compiled module serve every cap. It also tells the
// executor that a failed memory.grow was the cap, which the guest itself
// reports only as a crash (Go: "fatal error: out of memory", exit 2).
type capAllocator struct {
	limit    uint64 // bytes
	mem      []byte
	free     func()
	started  bool
	exceeded bool // a grow past limit was refused (or the minimum exceeds it)
}

func (a *capAllocator) Allocate(_, max uint64) experimental.LinearMemory {
	if max < a.limit {
		a.limit = max
	}
	return a
}

func (a *capAllocator) Reallocate(size uint64) []byte {
	first := !a.started
	a.started = true
	if size > a.limit {
		if first {
			// The module's minimum already exceeds the cap. wazero cannot
			// take a nil here; serve it and fail the run before it starts.
			a.exceeded = true
			a.mem = make([]byte, size)
			return a.mem
		}
		a.exceeded = true
		return nil
	}
	if uint64(cap(a.mem)) >= size {
		// Reserved (mmap'd, zero) or already grown: just extend.
		a.mem = a.mem[:size]
		return a.mem
	}
	if a.free == nil && (!first || size > smallMemory) {
		// Growing (or starting big): reserve the whole cap once so later
		// grows neither copy nor zero. Small memories that never grow stay
		// on the Go heap: a munmap costs more than the whole trivial run.
		if mem, free := reserve(a.limit); mem != nil {
			copy(mem, a.mem)
			a.mem, a.free = mem[:size], free
			return a.mem
		}
	}
	newCap := max(size, min(2*uint64(cap(a.mem)), a.limit))
	b := make([]byte, size, newCap)
	copy(b, a.mem)
	a.mem = b
	return a.mem
}

func (a *capAllocator) Free() {
	if a.free != nil {
		a.free()
		a.free = nil
	}
	a.mem = nil
}

var _ experimental.MemoryAllocator = (*capAllocator)(nil)
