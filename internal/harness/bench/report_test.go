package bench

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fixedResults is two scenarios × two modes, three repetitions each.
func fixedResults() []Result {
	var rs []Result
	for rep := 1; rep <= 3; rep++ {
		for _, sc := range []string{"redis", "dapr-bulk-100"} {
			f := 1.0
			if sc == "dapr-bulk-100" {
				f = 2
			}
			cpu := map[string]float64{"redis-server": 0.01 * f, "bench (producer+consumer)": 0.02 * f}
			rs = append(rs,
				Result{Scenario: sc, Mode: ModeThroughput, Size: 60, Rep: rep, PayloadBytes: 66, Messages: 1000, Sent: 1000, Delivered: 1000,
					Throughput: 10000 * f * float64(rep), Latency: Latency{P50: 10, P90: 20, P99: 30, P999: 40, Max: 50}, CPUPer1k: cpu},
				Result{Scenario: sc, Mode: ModeRate, Rate: 1000, Size: 60, Rep: rep, PayloadBytes: 66, Messages: 1000, Sent: 1000, Delivered: 999, Lost: 1, Dup: rep - 1,
					Throughput: 1000, Latency: Latency{P50: 0.5 * f * float64(rep), P90: 1, P99: 3, P999: 9, Max: 12}, CPUPer1k: cpu},
			)
		}
	}
	rs = append(rs, Result{Scenario: "redis", Mode: ModeRate, Rate: 500, Size: 60, Rep: 1, Messages: 10, Error: "redis went away"})
	return rs
}

func TestSummarize(t *testing.T) {
	sums := Summarize(fixedResults())
	if len(sums) != 5 {
		t.Fatalf("%d summaries, want 5", len(sums))
	}
	// Throughput first, then rates ascending; scenarios in run order.
	var order []string
	for _, s := range sums {
		order = append(order, s.Scenario+" "+s.Label())
	}
	want := "redis max,dapr-bulk-100 max,redis 500/s,redis 1000/s,dapr-bulk-100 1000/s"
	if got := strings.Join(order, ","); got != want {
		t.Errorf("order %s, want %s", got, want)
	}
	redisMax, redisRate := sums[0], sums[3]
	if redisMax.Throughput != (Stat{Median: 20000, Min: 10000, Max: 30000}) {
		t.Errorf("throughput %+v", redisMax.Throughput)
	}
	if redisRate.P50 != (Stat{Median: 1, Min: 0.5, Max: 1.5}) {
		t.Errorf("p50 %+v", redisRate.P50)
	}
	if redisRate.Lost != 3 || redisRate.Dup != 3 {
		t.Errorf("lost %d dup %d, want totals 3 and 3", redisRate.Lost, redisRate.Dup)
	}
	if got := redisRate.CPUPer1k["redis-server"].Median; got != 0.01 {
		t.Errorf("cpu %v", got)
	}
	if sums[2].Errors != 1 {
		t.Errorf("errors %d, want 1", sums[2].Errors)
	}
}

func TestStatOf(t *testing.T) {
	tests := map[string]struct {
		in   []float64
		want Stat
	}{
		"none": {nil, Stat{}},
		"one":  {[]float64{3}, Stat{3, 3, 3}},
		"odd":  {[]float64{5, 1, 3}, Stat{3, 1, 5}},
		"even": {[]float64{4, 1, 3, 2}, Stat{2.5, 1, 4}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := statOf(tc.in); got != tc.want {
				t.Errorf("statOf(%v) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestReportWrite(t *testing.T) {
	dir := t.TempDir()
	r := Report{Machine: Machine{CPU: "Test CPU", Cores: 2}, Command: "go run ./cmd/bench -reps 3", Config: Config{Reps: 3}, Results: fixedResults()}
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Test CPU, 2 cores", "`go run ./cmd/bench -reps 3`", "appendfsync always",
		"| redis | max | 66 | 1000 | 20000 (10000–30000) | 10.0 | 20.0 | 30.0 | 40.0 | 50.0 | 0 | 0 | 0% | 0.030 | bench (producer+consumer) 0.020; redis-server 0.010 |",
		"| dapr-bulk-100 | 1000/s | 66 | 1000 | 1000 (1000–1000) | 2.00 | 1.00 | 3.00 | 9.00 | 12.0 | 3 | 3 |",
		"redis ⚠ 1 error(s)", "redis went away", "plot.svg",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	js, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil || len(back.Results) != len(r.Results) {
		t.Errorf("results.json: %v, %d results, want %d", err, len(back.Results), len(r.Results))
	}
	svg, err := os.ReadFile(filepath.Join(dir, "plot.svg"))
	if err != nil {
		t.Fatal(err)
	}
	checkSVG(t, string(svg), "redis", "dapr-bulk-100", "Throughput", "Latency, ms (log), at 1000 msg/s")
}

// checkSVG asserts that svg is well-formed XML and mentions every want.
func checkSVG(t *testing.T, svg string, want ...string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("plot.svg is not well-formed: %v", err)
		}
	}
	for _, w := range want {
		if !strings.Contains(svg, w) {
			t.Errorf("plot.svg lacks %q", w)
		}
	}
}

func TestPlotEmpty(t *testing.T) {
	checkSVG(t, Plot(nil), "no results")
}

func TestLinesDrawsEverySeries(t *testing.T) {
	svg := Lines("Long run", "t (s)", []LinePanel{
		{Title: "Redis memory, MiB", Series: []Series{{Name: "used_memory", X: []float64{0, 5, 10}, Y: []float64{1, 20, 21}}}},
		{Title: "Entries", Series: []Series{{Name: "stream <orders>", X: []float64{0, 10}, Y: []float64{0, 3000}}, {Name: "records", X: []float64{0, 10}, Y: []float64{0, 6000}}}},
	})
	if !strings.HasPrefix(svg, "<svg") || strings.Count(svg, "<polyline") != 3 || !strings.Contains(svg, "stream &lt;orders&gt;") || !strings.Contains(svg, "Redis memory, MiB") {
		t.Errorf("want an SVG with 3 lines, escaped names and the titles:\n%s", svg)
	}
	// y from 0 to the nice ceiling of the highest value: 6000 → 10000.
	if !strings.Contains(svg, ">10000<") {
		t.Errorf("want a y axis up to 10000:\n%s", svg)
	}
}

func TestGoalsPerPolicy(t *testing.T) {
	thr := func(scenario string, v float64, cpu map[string]Stat) Summary {
		return Summary{Scenario: scenario, Mode: ModeThroughput, Size: 60, Reps: 1, Throughput: Stat{Median: v}, CPUPer1k: cpu}
	}
	lat := func(scenario string, p50, p99 float64) Summary {
		return Summary{Scenario: scenario, Mode: ModeRate, Rate: 1000, Size: 60, Reps: 1, P50: Stat{Median: p50}, P99: Stat{Median: p99}}
	}
	sums := []Summary{
		thr("redis", 10000, nil), thr("watermill", 9500, nil), thr("watermill-dedupe", 8000, nil), thr("dapr-bare", 9000, nil),
		thr("dapr-bulk100", 8500, map[string]Stat{"daprd (publisher)": {Median: 0.05}, "daprd (subscriber)": {Median: 0.1}, "subscriber": {Median: 0.04}, "bench (publisher)": {Median: 1}}),
		lat("redis", 0.7, 3.5), lat("dapr-grpc", 1.9, 6.6),
		thr(NoRecordScenario, 9000, nil),
		thr("dapr-bulk100-records", 9200, map[string]Stat{"daprd (publisher)": {Median: 0.05}, "daprd (subscriber)": {Median: 0.08}, "subscriber": {Median: 0.04}, RecordStoreCPU: {Median: 0.02}}),
	}
	sums[4].Dup = 1
	sums[3].CPUTotal, sums[4].CPUTotal, sums[7].CPUTotal = Stat{Median: 0.5}, Stat{Median: 1.19}, Stat{Median: 0.8} // dapr-bare, dapr-bulk100, no record
	sums[6].Busy = Stat{Median: 0.85}
	sums[6].CPUPer1k = map[string]Stat{"daprd (publisher)": {Median: 0.2}, "daprd (subscriber)": {Median: 0.25}, "subscriber": {Median: 0.1}, "bench (publisher)": {Median: 1}}
	sums[2].CPUTotal = Stat{Median: 1.0} // watermill-dedupe
	byName := func(gs []Goal) map[string]Goal {
		m := map[string]Goal{}
		for _, g := range gs {
			m[g.Name] = g
		}
		return m
	}
	every := byName(Goals("everysec", sums))
	if g := every["throughput mode (dapr-bulk100) vs watermill-dedupe"]; !g.Known || !g.Met || !strings.HasPrefix(g.Measured, "1.06 ×") {
		t.Errorf("vs watermill-dedupe (the exactly-once peer, not plain watermill): %+v, want 1.06 ×, met", g)
	}
	if g := every["throughput mode (dapr-bulk100) vs dapr-bare"]; !g.Known || !g.Met {
		t.Errorf("vs dapr-bare: %+v, want 0.94 ×, met (≥ 0.9)", g)
	}
	if g := every["CPU s per 1,000 orders, throughput mode (dapr-bulk100: daprd (publisher) + daprd (subscriber) + subscriber)"]; !g.Met || !strings.HasPrefix(g.Measured, "0.190") {
		t.Errorf("CPU: %+v, want 0.190 without the load generator, met", g)
	}
	// The record store's path: its own rows, its process in the CPU sum,
	// and the latency rows there but not known (not in this run).
	if g := every["throughput mode (dapr-bulk100-records) vs dapr-bare"]; !g.Known || !g.Met || !strings.HasPrefix(g.Measured, "1.02 ×") {
		t.Errorf("records vs dapr-bare: %+v, want 1.02 ×, met", g)
	}
	if g := every["CPU s per 1,000 orders, throughput mode (dapr-bulk100-records: daprd (publisher) + daprd (subscriber) + subscriber + recordstore)"]; !g.Met || !strings.HasPrefix(g.Measured, "0.190") {
		t.Errorf("records CPU: %+v, want 0.190 with the record store, met", g)
	}
	if g, ok := every["latency mode (dapr-grpc-records) p99 at 1000/s"]; !ok || g.Known {
		t.Errorf("records latency without its scenario: %+v (present %v), want a row, not known", g, ok)
	}
	if g := every["latency mode (dapr-grpc) p50 at 1000/s"]; g.Met || !strings.Contains(g.Measured, "+1.20") {
		t.Errorf("p50: %+v, want +1.20 ms, missed", g)
	}
	if g := every["latency mode (dapr-grpc) p99 at 1000/s"]; g.Met || !strings.Contains(g.Measured, "+3.10") {
		t.Errorf("p99: %+v, want +3.10 ms, missed", g)
	}
	if g := every["latency mode (dapr-grpc) p99 at every rate below 80% busy"]; !g.Known || g.Met || g.Measured != "no rate ran below 80% busy; busier: 1000/s (85%)" {
		t.Errorf("p99 below 80%% busy: %+v, want no rate below 80%% busy (1000/s at 85%%), missed", g)
	}
	// At lower rates the machine is less busy: each such rate is held to
	// raw Redis + 5 ms, the busier ones named.
	low := func(scenario string, rate, p99, busy float64) Summary {
		return Summary{Scenario: scenario, Mode: ModeRate, Rate: rate, Size: 60, Reps: 1, P99: Stat{Median: p99}, Busy: Stat{Median: busy}}
	}
	quiet := byName(Goals("everysec", append(slices.Clone(sums), low("redis", 200, 1.8, 0.07), low("dapr-grpc", 200, 6.1, 0.48),
		low("redis", 400, 1.9, 0.1), low("dapr-grpc", 400, 6.8, 0.73))))
	if g := quiet["latency mode (dapr-grpc) p99 at every rate below 80% busy"]; !g.Met ||
		g.Measured != "redis 200/s +4.30 ms (6.10 vs 1.80, 48% busy); 400/s +4.90 ms (6.80 vs 1.90, 73% busy); busier: 1000/s (85%)" {
		t.Errorf("p99 at the quiet rates: %+v, want both within 5 ms, met, 1000/s named", g)
	}
	quiet = byName(Goals("everysec", append(slices.Clone(sums), low("redis", 400, 1.9, 0.1), low("dapr-grpc", 400, 7.0, 0.73))))
	if g := quiet["latency mode (dapr-grpc) p99 at every rate below 80% busy"]; g.Met || !strings.Contains(g.Measured, "400/s +5.10 ms") {
		t.Errorf("p99 at 400/s 5.1 ms over raw Redis: %+v, want missed", g)
	}
	// A rate whose busy share is unknown is not shown quiet: named, not held.
	quiet = byName(Goals("everysec", append(slices.Clone(sums), low("redis", 200, 1.8, 0.07), low("dapr-grpc", 200, 6.1, 0.48),
		low("redis", 400, 1.9, 0.1), low("dapr-grpc", 400, 9, BusyUnknown))))
	if g := quiet["latency mode (dapr-grpc) p99 at every rate below 80% busy"]; !g.Met || !strings.Contains(g.Measured, "busier: 400/s (–), 1000/s (85%)") {
		t.Errorf("p99 with 400/s's busy share unknown: %+v, want 400/s named busier, 200/s met", g)
	}
	if g := every["total CPU per 1,000 orders, every process, throughput mode (dapr-bulk100) vs watermill-dedupe"]; g.Met || !strings.HasPrefix(g.Measured, "1.19 ×") {
		t.Errorf("whole CPU vs the peer: %+v, want 1.19 ×, missed (≤ 1.1)", g)
	}
	if g := every["CPU s per 1,000 orders, latency mode (dapr-grpc at 1000/s: both daprd and the apps)"]; g.Met || g.Measured != "0.550" {
		t.Errorf("latency mode's own CPU: %+v, want 0.550 without the load generator, missed (≤ 0.5)", g)
	}
	if p := RecordPrice(sums); !strings.Contains(p, "0.390 CPU-s per 1,000 orders") || !strings.Contains(p, "8500 vs 9000 msg/s (0.94 ×)") {
		t.Errorf("record price: %q, want 0.390 (1.190 − 0.800) and 8500 vs 9000", p)
	}
	if g := every["lost and duplicate effects, every run"]; g.Met {
		t.Errorf("a duplicate must miss the goal: %+v", g)
	}
	always := byName(Goals("always", sums[1:len(sums)-1])) // no raw Redis and no record store in this run
	for name := range always {
		if strings.Contains(name, "records") {
			t.Errorf("a row of the record store's path in a run without it: %s", name)
		}
	}
	if g := always["throughput mode (dapr-bulk100) vs redis"]; g.Known {
		t.Errorf("vs redis without redis: %+v, want not known", g)
	}
	if md := GoalsMarkdown("always", sums[1:]); !strings.Contains(md, "not in this run") {
		t.Errorf("markdown:\n%s", md)
	}
}
