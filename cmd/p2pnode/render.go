package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/p2pjobs/p2pnode/node/runner"
)

// seriesView renders a series' message stream for a person (tables, a
// progress bar on a terminal) or as JSON lines (--json).
type seriesView struct {
	out     io.Writer
	json    bool
	bar     *progressbar.ProgressBar
	lines   []runner.SummaryLine
	bids    *runner.Bids
	done    *runner.Done
	results string
	names   map[string]string // peer ID -> short label
}

func newSeriesView(out io.Writer, asJSON bool) *seriesView {
	return &seriesView{out: out, json: asJSON, names: map[string]string{}}
}

// short labels a peer by the tail of its ID, which is what differs.
func (v *seriesView) short(id string) string {
	if id == "" {
		return "-"
	}
	if len(id) > 10 {
		return "…" + id[len(id)-8:]
	}
	return id
}

func (v *seriesView) handle(m runner.Message) {
	if v.json {
		_ = json.NewEncoder(v.out).Encode(m)
	}
	switch m.Kind {
	case "start":
		v.results = m.Start.Results
		if !v.json {
			fmt.Fprintf(v.out, "series %s: %d jobs, results in %s\n", m.Start.Series, m.Start.Jobs, m.Start.Results)
			if m.Start.Skipped > 0 {
				fmt.Fprintf(v.out, "resuming: %d jobs already done are skipped\n", m.Start.Skipped)
			}
			if term.IsTerminal(int(os.Stderr.Fd())) {
				v.bar = progressbar.NewOptions(m.Start.Jobs, progressbar.OptionSetWriter(os.Stderr),
					progressbar.OptionSetDescription("jobs"), progressbar.OptionShowCount(), progressbar.OptionSetWidth(30),
					progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100_000_000))
			}
		}
	case "bids":
		v.bids = m.Bids
		if !v.json {
			v.printBids()
		}
	case "outcome":
		v.lines = append(v.lines, *m.Outcome)
		if v.bar != nil {
			_ = v.bar.Add(1)
		}
	case "done":
		v.done = m.Done
		if v.bar != nil {
			_ = v.bar.Finish()
		}
	}
}

func (v *seriesView) printBids() {
	b := v.bids
	fmt.Fprintf(v.out, "%d workers found, %d bids, %d declined\n", b.Candidates, len(b.Offers), len(b.Declines))
	if len(b.Offers) > 0 {
		tw := tabwriter.NewWriter(v.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  WORKER\tPRICE\tJOBS\tEST/JOB\tCAPACITY\tFOUND VIA\tPROTOCOL")
		for _, o := range b.Offers {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%dms\t%.3f\t%s\t%s\n", v.short(o.Worker), o.Price, o.MaxJobs, o.EstMs, o.Capacity, o.Route, o.Proto)
		}
		tw.Flush()
	}
	v.printDeclines()
}

func (v *seriesView) printDeclines() {
	if v.bids == nil || len(v.bids.Declines) == 0 {
		return
	}
	fmt.Fprintln(v.out, "declined:")
	tw := tabwriter.NewWriter(v.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  WORKER\tREASON\tDETAIL")
	for _, d := range v.bids.Declines {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.short(d.Worker), d.Reason, d.Detail)
	}
	tw.Flush()
}

// summary prints the job table and returns the failed count.
func (v *seriesView) summary() int {
	sort.Slice(v.lines, func(i, j int) bool { return v.lines[i].Job < v.lines[j].Job })
	failed := 0
	for _, l := range v.lines {
		if l.Status != "done" {
			failed++
		}
	}
	if v.json {
		return failed
	}
	tw := tabwriter.NewWriter(v.out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tPARAMS\tWORKER\tPATH\tRUN\tTOTAL\tTRIES\tRESULT")
	for _, l := range v.lines {
		res := l.Stdout
		if l.Status != "done" {
			res = "FAILED: " + l.Error
		}
		if len(res) > 90 {
			res = res[:87] + "..."
		}
		path := l.Path
		if path == "" {
			path = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2fs\t%.2fs\t%d\t%s\n", l.Job, paramsText(l.Params), v.short(l.Worker), path,
			float64(l.RunMs)/1000, l.Seconds, l.Attempts, strings.TrimSpace(res))
	}
	tw.Flush()
	per := map[string]int{}
	for _, l := range v.lines {
		if l.Status == "done" {
			per[v.short(l.Worker)]++
		}
	}
	var parts []string
	for w, n := range per {
		parts = append(parts, fmt.Sprintf("%s: %d", w, n))
	}
	sort.Strings(parts)
	routes := map[string]map[string]bool{} // route -> workers
	paths := map[string]int{}
	for _, l := range v.lines {
		if l.Route != "" {
			if routes[l.Route] == nil {
				routes[l.Route] = map[string]bool{}
			}
			routes[l.Route][l.Worker] = true
		}
		if l.Path != "" {
			paths[l.Path]++
		}
	}
	var via []string
	for r, ws := range routes {
		via = append(via, fmt.Sprintf("%s: %d", r, len(ws)))
	}
	sort.Strings(via)
	v.printFailures(failed)
	if v.done != nil {
		fmt.Fprintf(v.out, "%d jobs: %d done, %d failed in %.1fs (jobs per worker: %s)\n",
			len(v.lines), len(v.lines)-failed, failed, v.done.Seconds, strings.Join(parts, ", "))
		fmt.Fprintf(v.out, "workers found via %s; results over direct connections: %d, relayed: %d\nresults: %s\n",
			strings.Join(via, ", "), paths["direct"], paths["relayed"], v.done.Results)
	}
	return failed
}

// maxFailuresPrinted bounds the reasons printed under the table: a sweep
// whose thousand jobs fail alike needs a few, and summary.jsonl holds all.
const maxFailuresPrinted = 20

// printFailures prints each failed job's reason in full under the table,
// which cuts long ones: the end of a reason is often its fix (the
// undeclared-output message names the outputs: key last).
func (v *seriesView) printFailures(failed int) {
	if failed == 0 {
		return
	}
	fmt.Fprintln(v.out, "failures:")
	n := 0
	for _, l := range v.lines {
		if l.Status == "done" {
			continue
		}
		if n == maxFailuresPrinted {
			fmt.Fprintf(v.out, "  ... and %d more: see summary.jsonl\n", failed-n)
			return
		}
		n++
		fmt.Fprintf(v.out, "  %s: %s\n", l.Job, strings.TrimSpace(l.Error))
	}
}

// paramsText is a job's parameters for the table: "samples=1000 seed=17",
// by name; "-" for a series without params.
func paramsText(p map[string]string) string {
	if len(p) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + p[k]
	}
	s := strings.Join(parts, " ")
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}
