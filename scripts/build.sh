#!/bin/sh
# Builds the p2pnode binary with its source revision in `p2pnode --version`
# (also when the environment sets -buildvcs=false, or builds from a git
# worktree the toolchain cannot stamp). Usage: scripts/build.sh [OUTPUT]
set -eu
cd "$(dirname "$0")/.."
rev=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$rev" != unknown ] && [ -n "$(git status --porcelain 2>/dev/null)" ]; then rev="$rev-dirty"; fi
CGO_ENABLED=${CGO_ENABLED:-0} go build -trimpath -ldflags "-s -w -X github.com/p2pjobs/p2pnode/node.revision=$rev" -o "${1:-p2pnode}" ./cmd/p2pnode
