package launcher

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/logging"
	"dapr-pub-sub/internal/subscriber/web"
)

// LocalConfig is what `make run` starts; the defaults are the seed's ports.
type LocalConfig struct {
	Broker       string     // behind the pubsub component: redis, rabbitmq, mqtt, kafka
	Mode         Mode       // latency (one delivery per order) or throughput (bulk subscribe)
	Redis        BrokerMode // where Redis (always there: the state store) comes from
	RedisAddr    string
	Count        int
	Interval     time.Duration
	DaprLogLevel string
	AppPort      int // subscriber app, 8001
	SubHTTP      int // subscriber sidecar HTTP, 3501
	SubGRPC      int // subscriber sidecar gRPC, 50002
	PubHTTP      int // publisher sidecar HTTP, 3500
	PubGRPC      int // publisher sidecar gRPC, 50001
	Stay         bool
	Prepare      bool // only find or build daprd, then exit
}

func parseLocal(args []string, getenv func(string) string, stderr io.Writer) (LocalConfig, error) {
	env := &cli.Env{Getenv: getenv}
	str := env.Str
	c := LocalConfig{AppPort: 8001, SubHTTP: 3501, SubGRPC: 50002, PubHTTP: 3500, PubGRPC: 50001}
	var redisMode, mode string
	fs := cli.NewFlagSet("launcher", "Runs the whole system locally: Redis, the subscriber and the publisher, each\nwith its own daprd, on the seed's ports. Ctrl-C stops everything.", stderr)
	fs.StringVar(&c.Broker, "broker", str("BROKER", BrokerRedis), "the broker behind the pubsub component: redis, rabbitmq, mqtt or kafka [BROKER]")
	fs.StringVar(&mode, "mode", str("MODE", string(ModeLatency)), "latency: one delivery per order; throughput: bulk subscribe, batches of "+ThroughputBatch+" [MODE]")
	fs.StringVar(&redisMode, "redis", str("REDIS_MODE", string(ModeAuto)), "where Redis comes from: auto, existing, redis-server or embedded [REDIS_MODE]")
	fs.StringVar(&c.RedisAddr, "redis-addr", str("REDIS_ADDR", "127.0.0.1:6379"), "Redis address; replaces localhost:6379 in the components [REDIS_ADDR]")
	fs.IntVar(&c.AppPort, "app-port", c.AppPort, "subscriber app port")
	fs.IntVar(&c.SubHTTP, "sub-http-port", c.SubHTTP, "subscriber sidecar HTTP port")
	fs.IntVar(&c.SubGRPC, "sub-grpc-port", c.SubGRPC, "subscriber sidecar gRPC port")
	fs.IntVar(&c.PubHTTP, "pub-http-port", c.PubHTTP, "publisher sidecar HTTP port")
	fs.IntVar(&c.PubGRPC, "pub-grpc-port", c.PubGRPC, "publisher sidecar gRPC port")
	fs.IntVar(&c.Count, "count", 10, "orders the publisher sends")
	fs.DurationVar(&c.Interval, "interval", time.Second, "pause between orders")
	fs.StringVar(&c.DaprLogLevel, "dapr-log-level", str("DAPR_LOG_LEVEL", "error"), "daprd --log-level: debug, info, warn, error [DAPR_LOG_LEVEL]")
	fs.BoolVar(&c.Stay, "stay", true, "keep the subscriber running after the publisher is done, until Ctrl-C")
	fs.BoolVar(&c.Prepare, "prepare", false, "only find or build daprd (the slow part of a first run), print it and exit")
	err := cli.Parse(fs, args)
	if err != nil {
		return c, err
	}
	c.Redis = BrokerMode(redisMode)
	c.Mode, err = ParseMode(mode)
	return c, err
}

// Run is the launcher program behind `make run`: it finds or builds daprd,
// builds the apps, starts Redis, the subscriber with its sidecar, the
// publisher's sidecar and the publisher, and shows their output. It stops
// everything, in reverse order, when ctx is done or a process fails.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseLocal(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, "==> "+format+"\n", a...) }
	if cfg.Prepare {
		d, err := FindDaprd(ctx, root, stdout)
		if err != nil {
			return err
		}
		say("Using daprd %s (%s)", d.Version, d.Path)
		return nil
	}

	for _, p := range []struct {
		port int
		what string
	}{
		{cfg.AppPort, "subscriber app"}, {cfg.SubHTTP, "subscriber sidecar HTTP"}, {cfg.SubGRPC, "subscriber sidecar gRPC"},
		{cfg.PubHTTP, "publisher sidecar HTTP"}, {cfg.PubGRPC, "publisher sidecar gRPC"},
	} {
		if err := CheckPortFree(p.port, p.what, "stop the earlier `make run` still running"); err != nil {
			return err
		}
	}

	d, err := FindDaprd(ctx, root, stdout)
	if err != nil {
		return err
	}
	say("Using daprd %s (%s)", d.Version, d.Path)

	tmp, err := os.MkdirTemp("", "dapr-pub-sub-run-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	say("Building the publisher and subscriber")
	if err := BuildApps(ctx, root, tmp); err != nil {
		return err
	}

	var stops []func()
	defer func() {
		say("Stopping")
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()

	secrets := NewSecrets(getenv)
	broker, err := StartBroker(ctx, BrokerOptions{Mode: cfg.Redis, Addr: cfg.RedisAddr, Out: stdout,
		Password: secrets.RedisPassword, ExistingPassword: getenv("REDIS_PASSWORD")})
	if err != nil {
		return err
	}
	stops = append(stops, broker.Stop)
	secrets.RedisPassword = broker.Password
	// The API token, for the curl below and `make deadletters`: in a 0600
	// file, not on the screen.
	tokenFile := filepath.Join(root, ".run", "dapr-api-token")
	if err := writeSecretFile(tokenFile, secrets.APIToken); err != nil {
		return err
	}
	stops = append(stops, func() { os.Remove(tokenFile) })
	say("Redis (%s) at %s", broker.Mode, broker.Addr)

	// The sidecars read components/ as is, pointed at the broker's address.
	resources := filepath.Join(tmp, "components")
	if err := CopyComponents(filepath.Join(root, "components"), resources, broker.Addr); err != nil {
		return err
	}
	if broker.Mode == ModeEmbedded {
		// miniredis lacks what Dapr's Redis state store asks at start-up
		// (INFO replication): each sidecar keeps its state in memory.
		if err := os.WriteFile(filepath.Join(resources, "statestore.yaml"), []byte(inMemoryStateStore), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "WARNING: with the embedded broker the state store is Dapr's in-memory one: deduplication holds while the subscriber's sidecar runs, and `make deadletters` (another sidecar) sees no dead letters.")
	}
	mb, err := StartMessageBroker(ctx, root, cfg.Broker, stdout)
	if err != nil {
		return err
	}
	if mb != nil {
		stops = append(stops, mb.Stop)
		if err := UseBroker(root, resources, mb); err != nil {
			return err
		}
		say("%s at %s behind the pubsub component (Redis stays the state store)", mb.Kind, mb.Addr)
	}
	if err := cfg.Mode.Apply(resources, cfg.Broker); err != nil {
		return err
	}
	if cfg.Mode == ModeThroughput {
		say("Throughput mode: bulk subscribe, batches of up to %s orders, waiting at most %s", ThroughputBatch, ThroughputAwait)
	}
	var appEnv []string
	if logging.IsTerminal(stdout) {
		appEnv = append(appEnv, "LOG_FORMAT=text") // the apps write to our pipe, not the terminal
	}
	sub, err := StartSubscriberApp(ctx, SubscriberApp{Secrets: secrets, BinDir: tmp, Port: cfg.AppPort, SidecarGRPC: cfg.SubGRPC, Env: append(cfg.Mode.SubscriberEnv(), appEnv...), Out: stdout})
	if err != nil {
		return err
	}
	stops = append(stops, func() { sub.Stop(stopGrace) })
	daprConfig := filepath.Join(root, "config", "config.yaml")
	subSidecar, err := StartSidecar(ctx, d, Sidecar{
		Secrets: secrets, Config: daprConfig, AppID: SubscriberID, AppPort: cfg.AppPort, HTTPPort: cfg.SubHTTP, GRPCPort: cfg.SubGRPC,
		Resources: resources, LogLevel: cfg.DaprLogLevel,
	}, stdout)
	if err != nil {
		return err
	}
	stops = append(stops, func() { subSidecar.Stop(stopGrace) })
	say("Subscriber on :%d with its sidecar on :%d", cfg.AppPort, cfg.SubHTTP)
	say("Live page: http://127.0.0.1:%d/?key=%s (opens the page for this run only)", cfg.AppPort, web.PageKey(secrets.AppToken))

	pubSidecar, err := StartSidecar(ctx, d, Sidecar{
		Secrets: secrets, Config: daprConfig, AppID: PublisherID, HTTPPort: cfg.PubHTTP, GRPCPort: cfg.PubGRPC,
		Resources: resources, LogLevel: cfg.DaprLogLevel,
	}, stdout)
	if err != nil {
		return err
	}
	stops = append(stops, func() { pubSidecar.Stop(stopGrace) })
	say("Publisher sidecar on :%d; publishing %d orders", cfg.PubHTTP, cfg.Count)

	pub, err := StartPublisherApp(tmp, pubSidecar, []string{"-count", strconv.Itoa(cfg.Count), "-interval", cfg.Interval.String()}, appEnv, stdout)
	if err != nil {
		return err
	}
	stops = append(stops, func() { pub.Stop(stopGrace) })
	if err := firstExit(ctx, pub, sub, subSidecar.Process, pubSidecar.Process); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := pub.Err(); err != nil {
		return fmt.Errorf("publisher failed: %w", err)
	}
	if !cfg.Stay {
		return nil
	}
	say("Publisher done. The subscriber keeps running; publish more by hand:")
	fmt.Fprintf(stdout, "    curl -X POST localhost:%d/v1.0/publish/pubsub/orders -H \"dapr-api-token: $(cat .run/dapr-api-token)\" -H 'Content-Type: application/json' -d '{\"id\":7,\"message\":\"hi\"}'\n", cfg.PubHTTP)
	say("Dead letters: make deadletters (list), make deadletters ARGS=replay. Press Ctrl-C to stop.")
	return firstExit(ctx, sub, subSidecar.Process, pubSidecar.Process)
}

// inMemoryStateStore replaces components/statestore.yaml in embedded mode.
const inMemoryStateStore = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
`

// writeSecretFile writes secret to path, readable by the owner only.
func writeSecretFile(path, secret string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(secret), 0o600)
}

// firstExit waits for ctx to end (nil) or the first of ps to exit. The
// first process exiting is an error unless it is ps[0] ending with exit 0.
func firstExit(ctx context.Context, ps ...*Process) error {
	exited := make(chan *Process, len(ps))
	for _, p := range ps {
		go func() {
			select {
			case <-p.Done():
				exited <- p
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case p := <-exited:
		if p == ps[0] && p.Err() == nil {
			return nil
		}
		return p.exitError()
	}
}
