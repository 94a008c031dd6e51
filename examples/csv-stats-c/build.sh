#!/bin/sh
# Builds stats.wasm (WASI preview 1) from stats.c with Debian's clang and
# wasi-libc: apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32
set -eu
cd "$(dirname "$0")"
clang --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra -Wl,--strip-all -o stats.wasm stats.c
