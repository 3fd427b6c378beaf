package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"dapr-pub-sub/internal/appenv"
	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/logging"
)

// Config is the runner's configuration, from cmd/bench's flags.
type Config struct {
	Scenarios []string      // names to run; empty = all
	Reps      int           // repetitions, interleaved
	Messages  int           // messages per throughput-mode run
	Rates     []float64     // offered rates (msg/s) for the latency runs
	Duration  time.Duration // per rate: messages = rate × duration
	Sizes     []int         // payload sizes in bytes
	Senders   int           // concurrent senders per run
	Batch     int           // messages per pipeline in redis-pipelined
	Idle      time.Duration // give up on missing deliveries after this long without progress
	Out       string        // output folder
	// Fsyncs are the broker's appendfsync policies to run under, each a
	// dimension of the run like the sizes: "always" (what the system
	// ships), "everysec" (what most Redis deployments run) or "no".
	Fsyncs      []string
	DaprVersion string // the Dapr runtime of the Dapr scenarios; "" for the default (DAPR_VERSION)
	Profile     string // folder for CPU profiles of the Dapr processes in fixed-rate runs; "" for none
	Quick       bool   // smoke run: tiny counts, one rep
	Command     string // the command line, for the report header
}

// defaultScenarios returns every scenario the runner knows, in report order.
func defaultScenarios(cfg Config) []Scenario {
	return append([]Scenario{
		redisStreams{},
		redisStreams{pipelined: true, batch: cfg.Batch},
		watermillScenario{},
		watermillScenario{dedupe: true},
	}, daprScenarios(&daprEnv{version: cfg.DaprVersion})...)
}

// Run is cmd/bench: it parses args, starts one redis-server for the whole
// run, runs every selected scenario × size × mode cfg.Reps times
// (interleaved: repetition 1 of everything, then 2, …), and writes
// results.json, results.md and plot.svg to the output folder after every
// run, so that an interrupted run still leaves its results.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := ParseConfig(args, stderr)
	if err != nil {
		return err
	}
	log := logging.New(stderr, getenv(appenv.LogFormat), getenv(appenv.LogLevel))
	if cfg.DaprVersion == "" {
		cfg.DaprVersion = getenv("DAPR_VERSION")
	}
	all := defaultScenarios(cfg)
	scenarios, err := selectScenarios(all, cfg.Scenarios)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range all {
			if c, ok := s.(io.Closer); ok {
				if err := c.Close(); err != nil {
					log.Warn("Closing scenario", "scenario", s.Name(), "err", err)
				}
			}
		}
	}()
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}

	ports, err := proc.FreePorts(1)
	if err != nil {
		return err
	}
	broker, err := proc.StartRedis(ctx, proc.RedisOptions{
		Source:   proc.RedisServer,
		Addr:     "127.0.0.1:" + strconv.Itoa(ports[0]),
		Password: randomPassword(),
		Out:      stderr,
	})
	if err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	defer broker.Stop()
	redisInfo := Redis{Addr: broker.Addr, Password: broker.Password, Pid: broker.Process().Pid()}

	report := Report{Machine: DescribeMachine(), Command: cfg.Command, Config: cfg}
	for _, s := range scenarios {
		if d, ok := s.(daprScenario); ok {
			if err := d.env.prepare(ctx, stderr); err != nil {
				return err
			}
			report.Daprd = d.env.tools.Daprd.Version
			log.Info("Dapr scenarios", "daprd", d.env.tools.Daprd.Version, "path", d.env.tools.Daprd.Path)
			break
		}
	}
	log.Info("Benchmark", "scenarios", names(scenarios), "reps", cfg.Reps, "sizes", cfg.Sizes,
		"rates", cfg.Rates, "messages", cfg.Messages, "redis", broker.Addr, "out", cfg.Out)
	type mode struct {
		rate float64
		n    int
	}
	modes := []mode{{0, cfg.Messages}}
	for _, r := range cfg.Rates {
		modes = append(modes, mode{r, max(1, int(r*cfg.Duration.Seconds()))})
	}
	runs := 0
	for rep := 1; rep <= cfg.Reps; rep++ {
		for _, fsync := range cfg.Fsyncs {
			if err := setAppendFsync(ctx, broker.Addr, broker.Password, fsync); err != nil {
				return err
			}
			for _, size := range cfg.Sizes {
				for _, m := range modes {
					for _, s := range scenarios {
						runs++
						p := Params{
							Messages: m.n, Rate: m.rate, Size: size, Senders: cfg.Senders, Idle: cfg.Idle,
							Redis: redisInfo, RunID: fmt.Sprintf("%s-%d-%d", s.Name(), runs, time.Now().UnixNano()),
							Out: stderr, Profile: cfg.Profile,
						}
						res := runOne(ctx, s, p, rep, log)
						if ctx.Err() != nil {
							return ctx.Err()
						}
						res.Fsync = fsync
						report.Results = append(report.Results, res)
						if err := report.Write(cfg.Out); err != nil {
							return err
						}
					}
				}
			}
		}
	}
	fmt.Fprintf(stdout, "Results in %s (results.md, results.json, plot.svg)\n", cfg.Out)
	return nil
}

// runOne runs one scenario once, bounded in time, and labels its result.
func runOne(ctx context.Context, s Scenario, p Params, rep int, log *slog.Logger) Result {
	// Generous: the schedule, the idle wait, and slack for a slow system.
	limit := 2*time.Minute + 2*p.Idle
	if p.Rate > 0 {
		limit += time.Duration(3 * float64(p.Messages) / p.Rate * float64(time.Second))
	} else {
		limit += time.Duration(p.Messages) * time.Millisecond
	}
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	log.Info("Run", "scenario", s.Name(), "mode", p.Mode(), "rate", p.Rate, "size", p.Size, "rep", rep, "messages", p.Messages)
	res, err := s.Run(rctx, p)
	res.Scenario, res.Mode, res.Rate, res.Size, res.Rep = s.Name(), p.Mode(), p.Rate, p.Size, rep
	if res.Messages == 0 {
		res.Messages = p.Messages
	}
	if err != nil {
		res.Error = err.Error()
		log.Error("Run failed", "scenario", s.Name(), "err", err)
	}
	log.Info("Done", "scenario", s.Name(), "throughput", fmt.Sprintf("%.0f", res.Throughput),
		"p50_ms", res.Latency.P50, "p99_ms", res.Latency.P99, "lost", res.Lost, "dup", res.Dup)
	return res
}

// ParseConfig parses cmd/bench's flags; -h prints them to stderr.
func ParseConfig(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg                  Config
		scen, rates, sizes   string
		fsyncs               string
		defaultScenarioNames = names(slices.DeleteFunc(defaultScenarios(Config{}), isExperiment))
		experimentNames      = names(slices.DeleteFunc(defaultScenarios(Config{}), func(s Scenario) bool { return !isExperiment(s) }))
	)
	fs.StringVar(&scen, "scenarios", "", "comma-separated scenarios to run (default all: "+strings.Join(defaultScenarioNames, ",")+"; experiments, run only when named: "+strings.Join(experimentNames, ",")+")")
	fs.IntVar(&cfg.Reps, "reps", 3, "repetitions of every run, interleaved")
	fs.IntVar(&cfg.Messages, "messages", 20000, "messages per throughput-mode run (as fast as possible)")
	fs.StringVar(&rates, "rates", "500,1000,2000", "offered rates in msg/s for the latency runs (comma-separated; empty for none)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of each fixed-rate run: messages = rate × duration")
	fs.StringVar(&sizes, "sizes", "60,1024", "payload sizes in bytes (comma-separated)")
	fs.IntVar(&cfg.Senders, "senders", 8, "concurrent senders (goroutines) per run")
	fs.IntVar(&cfg.Batch, "batch", 100, "messages per pipeline in redis-pipelined")
	fs.DurationVar(&cfg.Idle, "idle", 10*time.Second, "count messages as lost after this long with no delivery")
	fs.StringVar(&fsyncs, "appendfsync", "always,everysec", "the broker's AOF fsync policies to run under, comma-separated: always (what the system ships), everysec (what most Redis deployments run), no")
	fs.StringVar(&cfg.Out, "out", "bench/results", "folder for results.json, results.md and plot.svg")
	fs.StringVar(&cfg.DaprVersion, "dapr-version", "", "Dapr runtime version of the Dapr scenarios (default $DAPR_VERSION, else tools/daprd/go.mod's)")
	fs.StringVar(&cfg.Profile, "profile", "", "folder for CPU profiles of both daprd and the subscriber during each Dapr scenario's fixed-rate runs (go tool pprof -top FILE)")
	fs.BoolVar(&cfg.Quick, "quick", false, "smoke run: 1 rep, 500 messages, one rate of 200 msg/s for 1 s, size 60, appendfsync always (flags given explicitly still win)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.Quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		quick := map[string]func(){
			"reps":        func() { cfg.Reps = 1 },
			"messages":    func() { cfg.Messages = 500 },
			"rates":       func() { rates = "200" },
			"duration":    func() { cfg.Duration = time.Second },
			"sizes":       func() { sizes = "60" },
			"appendfsync": func() { fsyncs = "always" },
			"idle":        func() { cfg.Idle = 5 * time.Second },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	var err error
	if cfg.Rates, err = parseList(rates, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }); err != nil {
		return Config{}, fmt.Errorf("-rates: %w", err)
	}
	if cfg.Sizes, err = parseList(sizes, strconv.Atoi); err != nil {
		return Config{}, fmt.Errorf("-sizes: %w", err)
	}
	cfg.Fsyncs, _ = parseList(fsyncs, func(s string) (string, error) { return s, nil })
	cfg.Scenarios, _ = parseList(scen, func(s string) (string, error) { return s, nil })
	switch {
	case cfg.Reps < 1:
		return Config{}, fmt.Errorf("-reps must be ≥ 1, got %d", cfg.Reps)
	case cfg.Messages < 1:
		return Config{}, fmt.Errorf("-messages must be ≥ 1, got %d", cfg.Messages)
	case cfg.Senders < 1:
		return Config{}, fmt.Errorf("-senders must be ≥ 1, got %d", cfg.Senders)
	case cfg.Batch < 1:
		return Config{}, fmt.Errorf("-batch must be ≥ 1, got %d", cfg.Batch)
	case len(cfg.Fsyncs) == 0 || slices.ContainsFunc(cfg.Fsyncs, func(f string) bool { return f != "always" && f != "everysec" && f != "no" }):
		return Config{}, fmt.Errorf("-appendfsync must list always, everysec or no, got %q", fsyncs)
	case len(cfg.Sizes) == 0:
		return Config{}, errors.New("-sizes must name at least one size")
	case cfg.Duration <= 0 && len(cfg.Rates) > 0:
		return Config{}, errors.New("-duration must be > 0")
	}
	for _, r := range cfg.Rates {
		if r <= 0 {
			return Config{}, fmt.Errorf("-rates: %v is not a positive rate", r)
		}
	}
	cfg.Command = commandLine(args)
	return cfg, nil
}

// parseList splits a comma-separated list, skipping empty items.
func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// selectScenarios returns the scenarios named in want, in all's order; all
// of them if want is empty.
func selectScenarios(all []Scenario, want []string) ([]Scenario, error) {
	if len(want) == 0 {
		return slices.DeleteFunc(slices.Clone(all), isExperiment), nil
	}
	byName := map[string]Scenario{}
	for _, s := range all {
		byName[s.Name()] = s
	}
	wanted := map[string]bool{}
	for _, w := range want {
		if byName[w] == nil {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", w, strings.Join(names(all), ", "))
		}
		wanted[w] = true
	}
	var out []Scenario
	for _, s := range all {
		if wanted[s.Name()] {
			out = append(out, s)
		}
	}
	return out, nil
}

// isExperiment reports whether s runs only when named.
func isExperiment(s Scenario) bool {
	d, ok := s.(daprScenario)
	return ok && d.experiment
}

func names(ss []Scenario) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Name()
	}
	return out
}

// commandLine is how the run was started, for the report: the go run form,
// which works from a fresh clone.
func commandLine(args []string) string {
	parts := []string{"go", "run", "./cmd/bench"}
	for _, a := range args {
		if strings.ContainsAny(a, " \t'\"$") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// setAppendFsync sets the broker's appendfsync policy.
func setAppendFsync(ctx context.Context, addr, password, policy string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password})
	defer c.Close()
	if err := c.ConfigSet(ctx, "appendfsync", policy).Err(); err != nil {
		return fmt.Errorf("set appendfsync %s: %w", policy, err)
	}
	return nil
}

func randomPassword() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// outPath is a file in the output folder.
func outPath(dir, name string) string { return filepath.Join(dir, name) }
