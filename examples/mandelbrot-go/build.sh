#!/bin/sh
# Builds mandelbrot.wasm (WASI preview 1) with the Go toolchain alone.
set -eu
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags='-s -w' -o mandelbrot.wasm .
