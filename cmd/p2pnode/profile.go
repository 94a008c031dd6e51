package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Profiling a whole network of processes (bench --scale, the demo): every
// p2pnode process started with these variables in its environment writes
// its own profiles, named by process ID ("%p" in the path):
//
//	P2PNODE_CPUPROFILE=/tmp/prof/%p.cpu   CPU profile until the process exits
//	P2PNODE_PROFILE_AFTER=30s             start the CPU profile this late (skip start-up)
//	P2PNODE_MEMPROFILE=/tmp/prof/%p.heap  heap profile at exit
//
// go tool pprof merges several files: go tool pprof -top /tmp/prof/*.cpu
func startProfiles() (stop func()) {
	cpuPath := profilePath("P2PNODE_CPUPROFILE")
	memPath := profilePath("P2PNODE_MEMPROFILE")
	if cpuPath == "" && memPath == "" {
		return func() {}
	}
	var (
		mu      sync.Mutex
		cpuFile *os.File
		stopped bool
	)
	if cpuPath != "" {
		after, _ := time.ParseDuration(os.Getenv("P2PNODE_PROFILE_AFTER"))
		time.AfterFunc(after, func() {
			mu.Lock()
			defer mu.Unlock()
			if stopped {
				return
			}
			f, err := os.Create(cpuPath)
			if err != nil {
				fmt.Fprintln(os.Stderr, "cpu profile:", err)
				return
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(os.Stderr, "cpu profile:", err)
				_ = f.Close()
				return
			}
			cpuFile = f
		})
	}
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		if cpuFile != nil {
			pprof.StopCPUProfile()
			_ = cpuFile.Close()
		}
		if memPath != "" {
			if f, err := os.Create(memPath); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				_ = f.Close()
			}
		}
	}
}

func profilePath(env string) string {
	p := os.Getenv(env)
	return strings.ReplaceAll(p, "%p", strconv.Itoa(os.Getpid()))
}
