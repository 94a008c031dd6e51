package exec

import "syscall"

// reserve maps n bytes of address space without committing memory: pages
// are faulted in as the guest touches them and returned on free.
func reserve(n uint64) ([]byte, func()) {
	b, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return nil, nil
	}
	return b, func() { _ = syscall.Munmap(b) }
}
