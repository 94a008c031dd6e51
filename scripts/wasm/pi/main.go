// Command pi estimates pi by Monte Carlo sampling. It is the sample job of
// p2pnode, built for WASI preview 1 into ../pi.wasm (see ../wasm.go), and
// also builds for the host so that it can be vetted and tried natively.
//
// It prints one JSON line to stdout and writes the same JSON to result.json
// in its working directory. The result is deterministic for a seed.
//
// Extra flags make bad jobs for the executor's tests: -trap, -loop, -alloc,
// -flood, -read and -env.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
)

type result struct {
	Seed    uint64  `json:"seed"`
	Samples uint64  `json:"samples"`
	Inside  uint64  `json:"inside"`
	Pi      float64 `json:"pi"`
}

var sink int

func main() {
	var (
		seed    = flag.Uint64("seed", 1, "random seed (same seed, same result)")
		samples = flag.Uint64("samples", 2_000_000, "number of random points")
		out     = flag.String("out", "result.json", "file to write the result to (empty: none)")
		trap    = flag.Bool("trap", false, "panic (non-zero exit)")
		loop    = flag.Bool("loop", false, "loop forever (timeout tests)")
		alloc   = flag.Int("alloc", 0, "allocate and touch this many MiB first (memory tests)")
		flood   = flag.Bool("flood", false, "print to stdout forever (output cap tests)")
		read    = flag.String("read", "", "print this file's content, or the error (sandbox tests)")
		env     = flag.Bool("env", false, "print the environment, one variable per line")
	)
	flag.Parse()
	switch {
	case *trap:
		panic("pi: trap requested")
	case *loop:
		for i := 0; ; i++ {
			sink = i
		}
	case *flood:
		line := strings.Repeat("x", 1023) + "\n"
		for {
			os.Stdout.WriteString(line)
		}
	case *read != "":
		b, err := os.ReadFile(*read)
		if err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
		return
	case *env:
		for _, kv := range os.Environ() {
			fmt.Println(kv)
		}
		return
	}
	if *alloc > 0 {
		b := make([]byte, *alloc<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		sink = len(b)
	}

	r := rand.New(rand.NewPCG(*seed, *seed^0x9e3779b97f4a7c15))
	var inside uint64
	for range *samples {
		x, y := r.Float64(), r.Float64()
		if x*x+y*y <= 1 {
			inside++
		}
	}
	res := result{Seed: *seed, Samples: *samples, Inside: inside}
	if *samples > 0 {
		res.Pi = 4 * float64(inside) / float64(*samples)
	}
	b, err := json.Marshal(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pi:", err)
		os.Exit(1)
	}
	b = append(b, '\n')
	os.Stdout.Write(b)
	if *out != "" {
		if err := os.WriteFile(*out, b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "pi:", err)
			os.Exit(1)
		}
	}
}
