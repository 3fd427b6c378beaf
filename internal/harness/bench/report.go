package bench

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
)

// Report is everything a benchmark run writes: the machine, the command and
// every repetition's Result.
type Report struct {
	Machine Machine  `json:"machine"`
	Command string   `json:"command"`
	Daprd   string   `json:"daprd,omitempty"` // the daprd version the Dapr scenarios ran on
	Config  Config   `json:"config"`
	Results []Result `json:"results"`
}

// Write writes results.json, results.md and plot.svg into dir.
func (r Report) Write(dir string) error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"results.json": append(js, '\n'),
		"results.md":   []byte(r.Markdown()),
		"plot.svg":     []byte(Plot(Summarize(r.Results))),
	}
	for name, b := range files {
		if err := os.WriteFile(outPath(dir, name), b, 0o644); err != nil {
			return fmt.Errorf("write results: %w", err)
		}
	}
	return nil
}

// Stat is a median with the range over repetitions.
type Stat struct{ Median, Min, Max float64 }

// statOf returns the median, min and max of vs (zero for none).
func statOf(vs []float64) Stat {
	if len(vs) == 0 {
		return Stat{}
	}
	s := slices.Clone(vs)
	sort.Float64s(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: med, Min: s[0], Max: s[len(s)-1]}
}

// counted says whether a repetition's measurements enter its row: it ran
// without error, or delivered something before the error.
func counted(r Result) bool { return r.Error == "" || r.Delivered > 0 }

// busyOf is the busy share over the counted repetitions that measured one;
// BusyUnknown in every field when none did.
func busyOf(rs []Result) Stat {
	var vs []float64
	for _, r := range rs {
		if counted(r) && r.Busy >= 0 {
			vs = append(vs, r.Busy)
		}
	}
	if len(vs) == 0 {
		return Stat{BusyUnknown, BusyUnknown, BusyUnknown}
	}
	return statOf(vs)
}

// busyCell prints a median busy share as a percentage, "–" when unknown.
func busyCell(s Stat) string {
	if s.Median < 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*s.Median)
}

// Summary is one row of the table: one scenario, mode, rate and size over
// all its repetitions. Latencies and CPU are medians; Lost, Dup and Failed
// are totals over the repetitions, so a single loss anywhere shows.
type Summary struct {
	Scenario, Mode string
	Fsync          string // the broker's appendfsync
	Rate           float64
	Size           int
	PayloadBytes   int
	Reps, Errors   int
	Messages       int // per repetition
	Throughput     Stat
	P50, P90, P99  Stat
	P999, Max      Stat
	Lost, Dup      int
	Failed         int
	CPUPer1k       map[string]Stat
	// CPUTotal is the median over repetitions of every process's CPU
	// summed (Result.CPUTotal); Busy the machine's median busy share.
	CPUTotal, Busy Stat
}

// Summarize groups results by scenario, mode, rate and size; rows come in the
// order the groups first appear, which is the runner's order.
func Summarize(results []Result) []Summary {
	type key struct {
		fsync, scenario, mode string
		rate                  float64
		size                  int
	}
	var order []key
	groups := map[key][]Result{}
	fsyncRank := map[string]int{}
	for _, r := range results {
		k := key{r.Fsync, r.Scenario, r.Mode, r.Rate, r.Size}
		if _, ok := fsyncRank[r.Fsync]; !ok {
			fsyncRank[r.Fsync] = len(fsyncRank)
		}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	// Sort by policy (in run order), size, then mode (throughput first,
	// rates ascending), keeping the scenarios in their run order within each.
	scenarioRank := map[string]int{}
	for _, k := range order {
		if _, ok := scenarioRank[k.scenario]; !ok {
			scenarioRank[k.scenario] = len(scenarioRank)
		}
	}
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if a.fsync != b.fsync {
			return fsyncRank[a.fsync] < fsyncRank[b.fsync]
		}
		if a.size != b.size {
			return a.size < b.size
		}
		if a.rate != b.rate {
			return a.rate < b.rate
		}
		return scenarioRank[a.scenario] < scenarioRank[b.scenario]
	})
	var out []Summary
	for _, k := range order {
		rs := groups[k]
		s := Summary{Fsync: k.fsync, Scenario: k.scenario, Mode: k.mode, Rate: k.rate, Size: k.size, Reps: len(rs), CPUPer1k: map[string]Stat{}}
		pick := func(f func(Result) float64) Stat {
			var vs []float64
			for _, r := range rs {
				if counted(r) {
					vs = append(vs, f(r))
				}
			}
			return statOf(vs)
		}
		s.Throughput = pick(func(r Result) float64 { return r.Throughput })
		s.P50 = pick(func(r Result) float64 { return r.Latency.P50 })
		s.P90 = pick(func(r Result) float64 { return r.Latency.P90 })
		s.P99 = pick(func(r Result) float64 { return r.Latency.P99 })
		s.P999 = pick(func(r Result) float64 { return r.Latency.P999 })
		s.Max = pick(func(r Result) float64 { return r.Latency.Max })
		s.CPUTotal = pick(Result.CPUTotal)
		s.Busy = busyOf(rs)
		procs := map[string]bool{}
		for _, r := range rs {
			s.Lost += r.Lost
			s.Dup += r.Dup
			s.Failed += r.SendFailed
			s.Messages = max(s.Messages, r.Messages)
			s.PayloadBytes = max(s.PayloadBytes, r.PayloadBytes)
			if r.Error != "" {
				s.Errors++
			}
			for p := range r.CPUPer1k {
				procs[p] = true
			}
		}
		for p := range procs {
			s.CPUPer1k[p] = pick(func(r Result) float64 { return r.CPUPer1k[p] })
		}
		out = append(out, s)
	}
	return out
}

// Label is how a summary's mode and rate read in the table and the plot.
func (s Summary) Label() string {
	if s.Mode == ModeThroughput {
		return "max"
	}
	return fmt.Sprintf("%g/s", s.Rate)
}

// Markdown renders the report as results.md: the machine, the command, and
// one table of summaries.
func (r Report) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "# Benchmark results\n\n")
	fmt.Fprintf(&b, "- Machine: %s, %d cores, %s, kernel %s\n", m.CPU, m.Cores, m.OS, m.Kernel)
	fmt.Fprintf(&b, "- Go: %s; Redis: %s", m.GoVersion, m.RedisVersion)
	if r.Daprd != "" {
		fmt.Fprintf(&b, "; daprd: %s", r.Daprd)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "- Date: %s\n", m.Date)
	fmt.Fprintf(&b, "- Command: `%s`\n", r.Command)
	fmt.Fprintf(&b, "- Broker: one dedicated redis-server shared by every scenario, AOF, under each `appendfsync` policy in turn (`always` is what the system ships; `everysec` is what most Redis deployments run); a fresh stream per run, deleted afterwards.\n")
	fmt.Fprintf(&b, "- Repetitions: %d, interleaved (repetition 1 of every run, then 2, …); %d senders; message ids 0..N-1.\n", r.Config.Reps, r.Config.Senders)
	fmt.Fprintf(&b, "- Mode `max`: %d messages sent as fast as possible; throughput = delivered / (last delivery − first send), latency from the actual send.\n", r.Config.Messages)
	fmt.Fprintf(&b, "- Mode `N/s`: an open-loop schedule at N msg/s for %s; latency from each message's *intended* send time (no coordinated omission), to its first delivery in the consumer.\n", r.Config.Duration)
	fmt.Fprintf(&b, "- Cells: median over repetitions, (min–max) for throughput; latency in ms (HDR histogram, µs resolution); lost/dup/failed are totals over all repetitions; busy is the machine's busy share over the run (all cores, every process: /proc/stat; – for a run under 20 ticks, too short to say); CPU is seconds per 1,000 messages (utime+stime from /proc), median: the total of every process the scenario runs, the broker and the load generator included (the whole price), then each process. `bench (publisher)` is the load generator, which also publishes: it counts in the total, and in no other sum.\n")
	sums := Summarize(r.Results)
	var policies []string
	for _, s := range sums {
		if !slices.Contains(policies, s.Fsync) {
			policies = append(policies, s.Fsync)
		}
	}
	for _, policy := range policies {
		var ps []Summary
		for _, s := range sums {
			if s.Fsync == policy {
				ps = append(ps, s)
			}
		}
		fmt.Fprintf(&b, "\n## appendfsync %s\n\n", cmp.Or(policy, "always"))
		b.WriteString(GoalsMarkdown(policy, ps))
		b.WriteString("\n| scenario | mode | size (B) | msgs | throughput msg/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost | dup | busy | CPU total s/1k | CPU s/1k msgs by process |\n")
		b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, s := range ps {
			lost := fmt.Sprint(s.Lost)
			if s.Failed > 0 {
				lost += fmt.Sprintf(" (+%d send failed)", s.Failed)
			}
			name := s.Scenario
			if s.Errors > 0 {
				name += fmt.Sprintf(" ⚠ %d error(s)", s.Errors)
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %d | %s | %.3f | %s |\n",
				name, s.Label(), s.PayloadBytes, s.Messages,
				fmt.Sprintf("%.0f (%.0f–%.0f)", s.Throughput.Median, s.Throughput.Min, s.Throughput.Max),
				ms(s.P50.Median), ms(s.P90.Median), ms(s.P99.Median), ms(s.P999.Median), ms(s.Max.Median),
				lost, s.Dup, busyCell(s.Busy), s.CPUTotal.Median, cpuCell(s.CPUPer1k))
		}
	}
	var errs bytes.Buffer
	for _, res := range r.Results {
		if res.Error != "" {
			fmt.Fprintf(&errs, "- %s %s size %d appendfsync %s rep %d: %s\n", res.Scenario, Summary{Mode: res.Mode, Rate: res.Rate}.Label(), res.Size, res.Fsync, res.Rep, res.Error)
		}
	}
	if errs.Len() > 0 {
		b.WriteString("\n## Errors\n\n")
		b.Write(errs.Bytes())
	}
	b.WriteString("\n![latency and throughput](plot.svg)\n")
	return b.String()
}

// ms formats a latency in milliseconds with sensible precision.
func ms(v float64) string {
	switch {
	case v == 0:
		return "–"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// cpuCell lists each process's CPU seconds per 1,000 messages, by name.
func cpuCell(cpu map[string]Stat) string {
	names := make([]string, 0, len(cpu))
	for n := range cpu {
		names = append(names, n)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %.3f", n, cpu[n].Median)
	}
	return strings.Join(parts, "; ")
}
