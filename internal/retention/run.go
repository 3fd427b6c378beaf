package retention

import (
	"context"
	"errors"
	"flag"
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

// Run is the retention program: it makes a pass every interval until ctx
// is done and serves /metrics, /backlog (JSON) and /healthz. It returns an error for bad
// settings or when it cannot listen.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	env := &cli.Env{Getenv: getenv}
	var cfg Config
	var addr, sentinels, master, streams, metricsAddr, logLevel string
	fs := cli.NewFlagSet("retention", "Keeps Redis bounded: trims the topic streams to what no consumer group still needs\nand to the retention window, removes idle consumers that hold nothing, and serves\nthe backlog as Prometheus metrics. It talks to Redis directly; the apps do not need it.", stderr)
	fs.StringVar(&addr, "redis-addr", env.Str(appenv.RedisAddr, "127.0.0.1:6379"), "the Redis of the pubsub component [REDIS_ADDR]; its password comes from REDIS_PASSWORD")
	fs.StringVar(&sentinels, "redis-sentinels", env.Str(appenv.RedisSentinels, ""), "Redis with failover: the Sentinels (comma-separated host:port) to find the primary through, instead of -redis-addr [REDIS_SENTINELS]")
	fs.StringVar(&master, "redis-master-name", env.Str(appenv.RedisMasterName, ""), "the master name the Sentinels watch (sentinelMasterName in the components) [REDIS_MASTER_NAME]")
	fs.StringVar(&streams, "streams", env.Str(appenv.RetentionStreams, "orders,orders-deadletter"), "comma-separated streams (topics) to keep [RETENTION_STREAMS]")
	fs.DurationVar(&cfg.Window, "window", env.Duration(appenv.RetentionWindow, DefaultWindow), "W: entries older than this go once no group needs them; keep it equal to the subscriber's [RETENTION_WINDOW]")
	fs.DurationVar(&cfg.ConsumerIdle, "consumer-idle", 0, "remove consumers idle this long that hold nothing (default: the window)")
	fs.DurationVar(&cfg.Interval, "interval", env.Duration(appenv.RetentionInterval, 10*time.Second), "time between passes [RETENTION_INTERVAL]")
	fs.StringVar(&metricsAddr, "metrics-address", env.Str(appenv.MetricsAddress, "127.0.0.1:9091"), "where /metrics, /backlog and /healthz are served [METRICS_ADDRESS]")
	fs.StringVar(&logLevel, "log-level", env.Str(appenv.LogLevel, "info"), "debug, info, warn or error [LOG_LEVEL]")
	if err := cli.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if env.Err != nil {
		return env.Err
	}
	for _, s := range strings.Split(streams, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Streams = append(cfg.Streams, s)
		}
	}
	switch {
	case sentinels != "" && master == "":
		return errors.New("-redis-sentinels needs -redis-master-name")
	case len(cfg.Streams) == 0:
		return errors.New("-streams must name at least one stream")
	case cfg.Window < 0 || cfg.ConsumerIdle < 0:
		return errors.New("-window and -consumer-idle must be ≥ 0")
	case cfg.Interval < 100*time.Millisecond:
		return fmt.Errorf("-interval must be ≥ 100ms, got %s", cfg.Interval)
	}
	log := logging.New(stderr, getenv(appenv.LogFormat), logLevel)
	var rdb *redis.Client
	if sentinels != "" {
		addr = "sentinels " + sentinels + " (" + master + ")"
		rdb = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: master, SentinelAddrs: strings.Split(sentinels, ","), Password: getenv(appenv.RedisPassword)})
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: addr, Password: getenv(appenv.RedisPassword)})
	}
	defer rdb.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	k := New(rdb, cfg, NewMetrics(reg), log)

	lis, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (set -metrics-address): %w", metricsAddr, err)
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
