package node

import (
	"runtime/debug"
	"sync"
)

// revision is set at link time by builds that know it, e.g. the
// Dockerfile and scripts/build.sh:
//
//	go build -ldflags "-X github.com/p2pjobs/p2pnode/node.revision=$(git rev-parse --short=12 HEAD)"
var revision string

// Revision is the source revision this binary was built from: the one
// given at link time, else the one the Go toolchain stamped (vcs.revision,
// 12 hex digits, "-dirty" when the tree had uncommitted changes), else
// "unknown" (built outside a checkout, or with -buildvcs=false).
var Revision = sync.OnceValue(func() string {
	if revision != "" {
		return revision
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
})

// FullVersion is Version with the source revision: "0.1.0-dev (rev 0123456789ab)".
func FullVersion() string { return Version + " (rev " + Revision() + ")" }
