package bench

import (
	"fmt"
	"strings"
)

// The scenarios the goals compare: the system in its throughput mode
// (dapr-bulk100) and latency mode (dapr-grpc), against raw Redis,
// Watermill with a durable dedupe (watermill-dedupe: exactly-once effects,
// as the system gives) and Dapr's own floor (dapr-bare).
const (
	goalThroughput = "dapr-bulk100"
	goalLatency    = "dapr-grpc"
	goalRate       = 1000
)

// goalCPU are the processes of the CPU goal: both sidecars and the
// subscriber app. The publisher app is the benchmark process, which is
// mostly the load generator: it is left out (see the report).
var goalCPU = []string{"daprd (publisher)", "daprd (subscriber)", "subscriber"}

// Goal is one goal of the benchmark as one run measured it.
type Goal struct {
	Name, Target, Measured string
	Met                    bool
	Known                  bool // false when the run lacks a scenario it needs
}

// Goals measures the goals for one appendfsync policy from its summaries,
// at their smallest payload size.
func Goals(policy string, sums []Summary) []Goal {
	size := 0
	for _, s := range sums {
		if size == 0 || s.Size < size {
			size = s.Size
		}
	}
	find := func(scenario string, rate float64) *Summary {
		for i := range sums {
			if s := &sums[i]; s.Scenario == scenario && s.Rate == rate && s.Size == size && s.Errors == 0 {
				return s
			}
		}
		return nil
	}
	ratio := func(base string, want float64) Goal {
		g := Goal{Name: fmt.Sprintf("throughput mode (%s) vs %s", goalThroughput, base), Target: fmt.Sprintf("≥ %.1f ×", want)}
		a, b := find(goalThroughput, 0), find(base, 0)
		if a == nil || b == nil || b.Throughput.Median == 0 {
			return g
		}
		r := a.Throughput.Median / b.Throughput.Median
		g.Measured = fmt.Sprintf("%.2f × (%.0f vs %.0f msg/s)", r, a.Throughput.Median, b.Throughput.Median)
		g.Met, g.Known = r >= want, true
		return g
	}
	var goals []Goal
	if policy == "everysec" {
		goals = append(goals, ratio("watermill-dedupe", 1.0), ratio("dapr-bare", 0.9))
	} else {
		goals = append(goals, ratio("redis", 1.0))
	}
	cpu := Goal{Name: "CPU s per 1,000 orders, throughput mode (" + strings.Join(goalCPU, " + ") + ")", Target: "≤ 0.20"}
	if s := find(goalThroughput, 0); s != nil {
		sum, parts := 0.0, make([]string, len(goalCPU))
		for i, p := range goalCPU {
			sum += s.CPUPer1k[p].Median
			parts[i] = fmt.Sprintf("%.3f", s.CPUPer1k[p].Median)
		}
		cpu.Measured = fmt.Sprintf("%.3f (%s)", sum, strings.Join(parts, " + "))
		cpu.Met, cpu.Known = sum <= 0.20, true
	}
	goals = append(goals, cpu)
	for _, q := range []struct {
		name   string
		slack  float64
		of     func(*Summary) float64
		target string
	}{
		{"p50", 1, func(s *Summary) float64 { return s.P50.Median }, "≤ redis + 1 ms"},
		{"p99", 3, func(s *Summary) float64 { return s.P99.Median }, "≤ redis + 3 ms"},
	} {
		g := Goal{Name: fmt.Sprintf("latency mode (%s) %s at %d/s", goalLatency, q.name, goalRate), Target: q.target}
		if a, b := find(goalLatency, goalRate), find("redis", goalRate); a != nil && b != nil {
			d := q.of(a) - q.of(b)
			g.Measured = fmt.Sprintf("redis %+.2f ms (%s vs %s)", d, ms(q.of(a)), ms(q.of(b)))
			g.Met, g.Known = d <= q.slack, true
		}
		goals = append(goals, g)
	}
	lost, dup, runs := 0, 0, 0
	for _, s := range sums {
		lost, dup, runs = lost+s.Lost, dup+s.Dup, runs+s.Reps
	}
	goals = append(goals, Goal{Name: "lost and duplicate effects, every run", Target: "0, 0",
		Measured: fmt.Sprintf("%d, %d (%d runs)", lost, dup, runs), Met: lost == 0 && dup == 0, Known: runs > 0})
	return goals
}

// GoalsMarkdown renders Goals(policy, sums) as a table.
func GoalsMarkdown(policy string, sums []Summary) string {
	var b strings.Builder
	b.WriteString("| goal | target | measured | met |\n|---|---|---|---|\n")
	for _, g := range Goals(policy, sums) {
		met, measured := "no", g.Measured
		switch {
		case !g.Known:
			met, measured = "–", "not in this run"
		case g.Met:
			met = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", g.Name, g.Target, measured, met)
	}
	return b.String()
}
