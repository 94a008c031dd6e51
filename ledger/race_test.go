//go:build race

package ledger_test

// raceEnabled: the race detector slows the model-based test ~5x; it runs
// fewer operations then (scripts/test.sh runs the suite with -race).
const raceEnabled = true
