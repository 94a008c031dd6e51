//go:build !linux

package exec

// reserve has no cheap address-space reservation here; the allocator falls
// back to growing a Go slice.
func reserve(uint64) ([]byte, func()) { return nil, nil }
