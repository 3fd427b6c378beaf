package retention

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"dapr-pub-sub/internal/appenv"
	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/logging"
)

// DefaultWindow is W unless RETENTION_WINDOW says otherwise.
const DefaultWindow = 24 * time.Hour

// DefaultConfig is the keeper program's settings when nothing is set: what
// ParseConfig gives for no flags and an empty environment.
func DefaultConfig() Config { return cli.Defaults(ParseConfig) }

// Env renders c as the environment of a keeper process: every setting
// but ConsumerIdle (a flag alone), so that ParseConfig(nil, that
// environment) gives c back when ConsumerIdle is its default.
func (c Config) Env() []string {
	var v appenv.Vars
	v.Set(appenv.RedisAddr, c.RedisAddr)
	v.Set(appenv.RedisPassword, c.RedisPassword)
	v.Set(appenv.RedisSentinels, strings.Join(c.Sentinels, ","))
	v.Set(appenv.RedisMasterName, c.MasterName)
	v.Set(appenv.RetentionStreams, strings.Join(c.Streams, ","))
	v.Set(appenv.RetentionWindow, c.Window)
	v.Set(appenv.RetentionInterval, c.Interval)
	v.Set(appenv.MetricsAddress, c.MetricsAddress)
	v.Set(appenv.LogLevel, c.LogLevel)
	v.Set(appenv.LogFormat, c.LogFormat)
	return v
}

// ParseConfig reads the keeper program's settings from args (without the
// program name) with defaults from getenv; usage and errors go to stderr,
// and -h gives flag.ErrHelp.
func ParseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	env := &cli.Env{Getenv: getenv}
	var cfg Config
	var sentinels, streams string
	fs := cli.NewFlagSet("retention", "Keeps Redis bounded: trims the topic streams to what no consumer group still needs\nand to the retention window, removes idle consumers that hold nothing, and serves\nthe backlog as Prometheus metrics. It talks to Redis directly; the apps do not need it.", stderr)
	fs.StringVar(&cfg.RedisAddr, "redis-addr", env.Str(appenv.RedisAddr, "127.0.0.1:6379"), "the Redis of the pubsub component [REDIS_ADDR]; its password comes from REDIS_PASSWORD")
	fs.StringVar(&sentinels, "redis-sentinels", env.Str(appenv.RedisSentinels, ""), "Redis with failover: the Sentinels (comma-separated host:port) to find the primary through, instead of -redis-addr [REDIS_SENTINELS]")
	fs.StringVar(&cfg.MasterName, "redis-master-name", env.Str(appenv.RedisMasterName, ""), "the master name the Sentinels watch (sentinelMasterName in the components) [REDIS_MASTER_NAME]")
	fs.StringVar(&streams, "streams", env.Str(appenv.RetentionStreams, "orders,orders-deadletter"), "comma-separated streams (topics) to keep [RETENTION_STREAMS]")
	fs.DurationVar(&cfg.Window, "window", env.Duration(appenv.RetentionWindow, DefaultWindow), "W: entries older than this go once no group needs them; keep it equal to the subscriber's [RETENTION_WINDOW]")
	fs.DurationVar(&cfg.ConsumerIdle, "consumer-idle", 0, "remove consumers idle this long that hold nothing (default: the window)")
	fs.DurationVar(&cfg.Interval, "interval", env.Duration(appenv.RetentionInterval, 10*time.Second), "time between passes [RETENTION_INTERVAL]")
	fs.StringVar(&cfg.MetricsAddress, "metrics-address", env.Str(appenv.MetricsAddress, "127.0.0.1:9091"), "where /metrics, /backlog and /healthz are served [METRICS_ADDRESS]")
	fs.StringVar(&cfg.LogLevel, "log-level", env.Str(appenv.LogLevel, "info"), "debug, info, warn or error [LOG_LEVEL]")
	if err := cli.Parse(fs, args); err != nil {
		return Config{}, err
	}
	if env.Err != nil {
		return Config{}, env.Err
	}
	cfg.RedisPassword = getenv(appenv.RedisPassword) // a secret: no flag, so it is not in ps
	cfg.LogFormat = getenv(appenv.LogFormat)
	cfg.Streams = splitList(streams)
	cfg.Sentinels = splitList(sentinels)
	switch {
	case len(cfg.Sentinels) > 0 && cfg.MasterName == "":
		return Config{}, errors.New("-redis-sentinels needs -redis-master-name")
	case len(cfg.Streams) == 0:
		return Config{}, errors.New("-streams must name at least one stream")
	case cfg.Window < 0 || cfg.ConsumerIdle < 0:
		return Config{}, errors.New("-window and -consumer-idle must be ≥ 0")
	case cfg.Interval < 100*time.Millisecond:
		return Config{}, fmt.Errorf("-interval must be ≥ 100ms, got %s", cfg.Interval)
	}
	return cfg, nil
}

// splitList reads a comma-separated list, blanks left out.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Run is the retention program: it makes a pass every interval until ctx
// is done and serves /metrics, /backlog (JSON) and /healthz. It returns an error for bad
// settings or when it cannot listen.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := ParseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	var rdb *redis.Client
	addr := cfg.RedisAddr
	if len(cfg.Sentinels) > 0 {
		addr = "sentinels " + strings.Join(cfg.Sentinels, ",") + " (" + cfg.MasterName + ")"
		rdb = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: cfg.MasterName, SentinelAddrs: cfg.Sentinels, Password: cfg.RedisPassword})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: addr, Password: cfg.RedisPassword})
	}
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	k := New(rdb, cfg, NewMetrics(reg), log)

	lis, err := net.Listen("tcp", cfg.MetricsAddress)
	if err != nil {
		return fmt.Errorf("listen on %s (set -metrics-address): %w", cfg.MetricsAddress, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("GET /backlog", BacklogHandler(k))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("The metrics server stopped", "err", err)
		}
	}()
	defer srv.Close()
	log.Info("Retention keeper running", "redis", addr, "streams", cfg.Streams, "window", cfg.Window.String(), "interval", cfg.Interval.String(), "metrics", lis.Addr().String())
	fmt.Fprintf(stdout, "retention: keeping %s to %s, metrics on http://%s/metrics\n", strings.Join(cfg.Streams, ", "), cfg.Window, lis.Addr())
	k.Run(ctx)
	return nil
}
