//go:build race

package viz

// raceEnabled: the race detector slows pure Go work some tenfold, so the
// scale test generates fewer events (the page's share is unaffected).
const raceEnabled = true
