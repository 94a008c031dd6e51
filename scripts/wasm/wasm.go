// Package wasm embeds the sample WASI modules shipped with p2pnode: Pi, a
// Monte Carlo estimate of pi written in Go (source in ./pi), and Trivial, a
// hand-written module that prints "ok" and measures executor overhead
// (trivial.wat). Any package may import it; the .wasm files are committed so
// that a fresh clone builds without wat2wasm or a wasip1 build step.
package wasm

import _ "embed"

//go:generate sh -c "cd pi && GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags='-s -w' -o ../pi.wasm . && cd .. && wat2wasm trivial.wat -o trivial.wasm"

// Pi is the pi estimator compiled for WASI preview 1. Flags: -seed N
// -samples M; it prints one JSON line and writes it to result.json.
//
//go:embed pi.wasm
var Pi []byte

// Trivial writes "ok\n" to stdout and returns.
//
//go:embed trivial.wasm
var Trivial []byte
