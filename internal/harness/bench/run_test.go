package bench

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	tests := map[string]struct {
		args    []string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		"defaults": {args: nil, check: func(t *testing.T, c Config) {
			if c.Reps != 3 || c.Messages != 20000 || !slices.Equal(c.Rates, []float64{500, 1000, 2000}) ||
				c.Duration != 10*time.Second || !slices.Equal(c.Sizes, []int{60, 1024}) || c.Out != "bench/results" || len(c.Scenarios) != 0 ||
				!slices.Equal(c.Fsyncs, []string{"always", "everysec"}) {
				t.Errorf("defaults: %+v", c)
			}
			if c.Command != "go run ./cmd/bench" {
				t.Errorf("command %q", c.Command)
			}
		}},
		"quick": {args: []string{"-quick"}, check: func(t *testing.T, c Config) {
			if c.Reps != 1 || c.Messages != 500 || !slices.Equal(c.Rates, []float64{200}) || !slices.Equal(c.Sizes, []int{60}) || !slices.Equal(c.Fsyncs, []string{"always"}) {
				t.Errorf("quick: %+v", c)
			}
		}},
		"quick, explicit flags win": {args: []string{"-quick", "-messages", "50", "-rates", ""}, check: func(t *testing.T, c Config) {
			if c.Messages != 50 || len(c.Rates) != 0 || c.Reps != 1 {
				t.Errorf("quick with flags: %+v", c)
			}
		}},
		"lists": {args: []string{"-scenarios", "redis, watermill", "-sizes", "1024", "-rates", "750"}, check: func(t *testing.T, c Config) {
			if !slices.Equal(c.Scenarios, []string{"redis", "watermill"}) || !slices.Equal(c.Sizes, []int{1024}) || !slices.Equal(c.Rates, []float64{750}) {
				t.Errorf("lists: %+v", c)
			}
			if !strings.Contains(c.Command, `"redis, watermill"`) {
				t.Errorf("command %q does not quote the spaced argument", c.Command)
			}
		}},
		"bad rate":       {args: []string{"-rates", "fast"}, wantErr: "-rates"},
		"negative rate":  {args: []string{"-rates", "-5"}, wantErr: "positive"},
		"no sizes":       {args: []string{"-sizes", ""}, wantErr: "-sizes"},
		"zero reps":      {args: []string{"-reps", "0"}, wantErr: "-reps"},
		"bad fsync":      {args: []string{"-appendfsync", "always,sometimes"}, wantErr: "-appendfsync"},
		"stray argument": {args: []string{"now"}, wantErr: "unexpected"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := ParseConfig(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestSelectScenarios(t *testing.T) {
	all := defaultScenarios(Config{Batch: 10})
	got, err := selectScenarios(all, []string{"watermill", "redis"})
	if err != nil {
		t.Fatal(err)
	}
	if n := names(got); !slices.Equal(n, []string{"redis", "watermill"}) {
		t.Errorf("selected %v, want run order [redis watermill]", n)
	}
	def, _ := selectScenarios(all, nil)
	if n := names(def); !slices.Contains(n, "dapr-bare") || slices.Contains(n, "dapr-grpc-c32") {
		t.Errorf("default scenarios %v: want dapr-bare, no experiment", n)
	}
	if got, _ := selectScenarios(all, []string{"dapr-grpc-c32"}); len(got) != 1 {
		t.Errorf("an experiment named: %v, want it", names(got))
	}
	if _, err := selectScenarios(all, []string{"kafka"}); err == nil || !strings.Contains(err.Error(), "redis-pipelined") {
		t.Errorf("err = %v, want one listing the known scenarios", err)
	}
}

// TestQuickBench is the smoke run of the harness: the baselines, tiny
// counts, against a real redis-server (and, for the Dapr scenarios, real
// daprd sidecars and the subscriber). It checks that the outputs are
// written and nothing was lost or duplicated; it asserts no timings.
func TestQuickBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server, daprd and the apps: make test runs it, make unit (-short) does not")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("the benchmark smoke test needs redis-server on PATH: apt-get install -y redis-server")
	}
	out := t.TempDir()
	args := []string{"-quick", "-scenarios", "redis,redis-pipelined,watermill,watermill-dedupe,dapr-grpc,dapr-bulk100,dapr-bulk100-records,dapr-bulk100-norecord,dapr-grpc-ordered,dapr-bare", "-messages", "300", "-out", out}
	if err := Run(t.Context(), args, func(string) string { return "" }, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"results.json", "results.md", "plot.svg"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != 20 { // 10 scenarios × (max + 200/s)
		t.Errorf("%d results, want 20", len(r.Results))
	}
	for _, res := range r.Results {
		if res.Error != "" || res.Lost != 0 || res.Dup != 0 || res.Unknown != 0 || res.Delivered != res.Messages {
			t.Errorf("%s %s: error %q, delivered %d of %d, lost %d, dup %d, unknown %d",
				res.Scenario, res.Mode, res.Error, res.Delivered, res.Messages, res.Lost, res.Dup, res.Unknown)
		}
		// Unknown only for a run shorter than the ticks can resolve (twice
		// minBusyTicks' time on this machine's cores, for a tick's slack).
		short := res.Seconds < 2*minBusyTicks/(clockTicks*float64(runtime.NumCPU()))
		if !(res.Busy > 0 && res.Busy <= 1 || res.Busy == BusyUnknown && short) {
			t.Errorf("%s %s: the machine's busy share %v over a %.3f s run, want in (0, 1] (unknown only under %d ticks)",
				res.Scenario, res.Mode, res.Busy, res.Seconds, minBusyTicks)
		}
		if _, ok := res.CPUSeconds[RedisCPU]; !ok {
			t.Errorf("%s %s: no CPU for %s: %v", res.Scenario, res.Mode, RedisCPU, res.CPUSeconds)
		}
		// The record store's scenario counts its process, and only it.
		if _, ok := res.CPUSeconds[RecordStoreCPU]; ok != strings.HasSuffix(res.Scenario, "-records") {
			t.Errorf("%s %s: CPU of %s present %v: %v", res.Scenario, res.Mode, RecordStoreCPU, ok, res.CPUSeconds)
		}
	}
}
