// Package launcher runs the whole system locally, as `make run` does
// (cmd/launcher): it reads the run's flags, prepares daprd and the apps,
// starts the system (internal/harness/system), publishes the run's orders
// and shows what the subscriber prints, with a hand-typed order to try.
package launcher

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/harness/system"
	"dapr-pub-sub/internal/logging"
	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/subscriber"
	"dapr-pub-sub/internal/subscriber/httpch"
)

// local is what `make run` was asked for.
type local struct {
	env         system.Env // Tools, Secrets, Out and LogTo set by Run
	redis       system.Redis
	pubsub      system.PubSub
	sub         system.Node
	pub         system.PublisherSidecar
	outbox      bool // the Outbox part
	records     bool // the RecordStore part
	daprVersion string
	count       int
	interval    time.Duration
	stay        bool
	prepare     bool
	ordered     bool // the subscriber's ordered mode, and lives to show it
	events      int  // events per order's life; 0: 4 when ordered, else 1
	shuffle     int  // publish shuffled within runs of this many; 0: the whole run when ordered
}

func parseLocal(args []string, getenv func(string) string, stderr io.Writer) (local, error) {
	env := &cli.Env{Getenv: getenv}
	str := env.Str
	// The original example's HTTP ports; the app↔sidecar gRPC ports are picked free
	// (below the ephemeral range) unless given: a fixed port there can be
	// held by any client socket.
	l := local{sub: system.Node{Ports: system.NodePorts{App: 8001, AppGRPC: 8002, HTTP: 3501}}, pub: system.PublisherSidecar{HTTPPort: 3500}}
	p := &l.sub.Ports
	var redisSource, mode, channel string
	fs := cli.NewFlagSet("launcher", "Runs the whole system locally: Redis, the subscriber and the publisher, each\nwith its own daprd, on the original example's ports. Ctrl-C stops everything.", stderr)
	fs.StringVar(&l.pubsub.Kind, "broker", str("BROKER", proc.BrokerRedis), "the broker behind the pubsub component: redis, rabbitmq, mqtt, kafka; or a three-node cluster on network namespaces (root): jetstream, rabbitmq-cluster (quorum queues) [BROKER]")
	fs.StringVar(&mode, "mode", str("MODE", string(proc.ModeLatency)), "latency: one delivery per order; throughput: bulk subscribe, batches of "+strconv.Itoa(proc.ThroughputBatch)+" [MODE]")
	fs.StringVar(&channel, "channel", str("CHANNEL", ""), "how daprd delivers to the subscriber: grpc (default; never acknowledges what the app did not answer), stream (the app opens subscription streams; no app port; latency mode only) or http (the original example's shape; default and required in the throughput mode) [CHANNEL]")
	fs.StringVar(&l.daprVersion, "dapr-version", str("DAPR_VERSION", ""), "Dapr runtime version to run (default: tools/daprd/go.mod's) [DAPR_VERSION]")
	fs.StringVar(&redisSource, "redis", str("REDIS_MODE", string(proc.RedisAuto)), "where Redis comes from: auto, existing, redis-server or embedded [REDIS_MODE]")
	fs.StringVar(&l.redis.Options.Addr, "redis-addr", str("REDIS_ADDR", "127.0.0.1:6379"), "Redis address; replaces localhost:6379 in the components [REDIS_ADDR]")
	fs.IntVar(&p.App, "app-port", p.App, "subscriber app port")
	fs.IntVar(&p.AppGRPC, "app-grpc-port", p.AppGRPC, "subscriber app gRPC port, where daprd delivers on the grpc channel")
	fs.IntVar(&p.HTTP, "sub-http-port", p.HTTP, "subscriber sidecar HTTP port")
	fs.IntVar(&p.GRPC, "sub-grpc-port", 0, "subscriber sidecar gRPC port (default: a free one)")
	fs.IntVar(&l.pub.HTTPPort, "pub-http-port", l.pub.HTTPPort, "publisher sidecar HTTP port")
	fs.IntVar(&l.pub.GRPCPort, "pub-grpc-port", 0, "publisher sidecar gRPC port (default: a free one)")
	fs.IntVar(&l.count, "count", 10, "orders the publisher sends")
	fs.DurationVar(&l.interval, "interval", time.Second, "pause between orders")
	fs.StringVar(&l.env.Dapr.LogLevel, "dapr-log-level", str("DAPR_LOG_LEVEL", "info"), "daprd --log-level, for its own log in .run/ (the console shows its errors): debug, info, warn, error [DAPR_LOG_LEVEL]")
	fs.BoolVar(&l.outbox, "outbox", env.Bool("OUTBOX", false), "the publisher stores each order in the order store (components/outbox/), and Dapr's transactional outbox publishes it [OUTBOX]")
	fs.BoolVar(&l.records, "records", env.Bool("RECORDS", false), "the subscriber keeps its processed-order records in the record store (components/records/, cmd/recordstore): a Dapr pluggable state store that inserts a batch of records in one Redis step [RECORDS]")
	fs.BoolVar(&l.ordered, "ordered", env.Bool("ORDERED", false), "the subscriber applies each order's events in sequence; the publisher publishes each order's life (created, paid, shipped, delivered) shuffled, to show it [ORDERED]")
	fs.IntVar(&l.events, "events", 0, "events of each order's life, 1–4 (default 4 with -ordered, else 1)")
	fs.IntVar(&l.shuffle, "shuffle", 0, "publish the events shuffled within runs of this many (default: the whole run with -ordered, else in order)")
	fs.BoolVar(&l.stay, "stay", true, "keep the subscriber running after the publisher is done, until Ctrl-C")
	fs.BoolVar(&l.prepare, "prepare", false, "only find or build daprd (the slow part of a first run), print it and exit")
	err := cli.Parse(fs, args)
	if err != nil {
		return l, err
	}
	if env.Err != nil {
		return l, env.Err
	}
	l.redis.Options.Source = proc.RedisSource(redisSource)
	if l.env.Mode, err = proc.ParseMode(mode); err != nil {
		return l, err
	}
	l.env.Channel, err = system.ParseChannel(channel)
	return l, err
}

// parts are the run's system: Redis, the broker behind pubsub, the record
// store and the outbox when asked for, the keeper, the subscriber, the
// publisher's sidecar.
func (l local) parts() []system.Part {
	parts := []system.Part{l.redis, l.pubsub}
	if l.records {
		parts = append(parts, system.RecordStore{})
	}
	if l.outbox {
		parts = append(parts, system.Outbox{})
	}
	return append(parts, system.Keeper{}, l.sub, l.pub)
}

// Run is the launcher program behind `make run`: it reads the flags into
// the system's parts, starts the system, starts the publisher, and shows every process's
// output until ctx is done or a process fails; then it stops everything in
// reverse order.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	l, err := parseLocal(args, getenv, stderr)
	if err != nil {
		return err
	}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, "==> "+format+"\n", a...) }
	if l.prepare {
		root, err := proc.RepoRoot()
		if err != nil {
			return err
		}
		d, err := proc.FindDaprd(ctx, root, l.daprVersion, stdout)
		if err != nil {
			return err
		}
		say("Using daprd %s (%s)", d.Version, d.Path)
		return nil
	}
	if err := l.checkPorts(); err != nil {
		return err
	}
	tools, cleanup, err := system.Prepare(ctx, l.daprVersion, stdout)
	if err != nil {
		return err
	}
	defer cleanup()
	say("Using daprd %s (%s)", tools.Daprd.Version, tools.Daprd.Path)

	secrets := proc.NewSecrets(getenv)
	// daprd's known lines (a Dapr defect we reported) are explained once
	// and counted, not printed every 2 s.
	folder := proc.NewFolder(stdout, proc.KnownDaprLines)
	l.env.Tools, l.env.Secrets, l.env.Out = tools, &secrets, folder
	l.redis.Options.ExistingPassword = getenv("REDIS_PASSWORD")
	appLog := ""
	if logging.IsTerminal(stdout) {
		appLog = "text" // the apps write to our pipe, not the terminal
	}
	l.sub.Config = func(c *subscriber.Config) { c.LogFormat, c.Ordered = appLog, l.ordered }
	if l.pubsub.Kind == "" || l.pubsub.Kind == proc.BrokerRedis {
		say("Starting Redis, the subscriber with its sidecar, and the publisher's sidecar")
	} else {
		say("Starting Redis (the state store), %s behind the pubsub component, the subscriber with its sidecar, and the publisher's sidecar", l.pubsub.Kind)
	}
	// Redis's, each daprd's and another broker's own lines go to a file
	// of each's own in .run/; the lines that stand for a problem are shown
	// here too (a broker's only once it is up: its start-up is noisy).
	logs := &logFiles{root: tools.Root, console: folder, byName: map[string]*proc.LogFile{}}
	defer logs.close()
	l.env.LogTo = logs.open
	sys, err := system.Start(ctx, l.env, l.parts()...)
	if err != nil {
		return logs.wrap(err)
	}
	logs.arm()
	if logs.err != nil {
		say("Some of the own logs could not be opened (%v): their lines are shown here", logs.err)
	}
	defer func() {
		say("Stopping")
		logs.disarm()
		sys.Stop()
		if s := folder.Summary(); s != "" {
			say("%s", s)
		}
	}()
	// The API token, for the curl below and `make deadletters`: in a 0600
	// file, not on the screen.
	tokenFile := filepath.Join(tools.Root, ".run", "dapr-api-token")
	if err := writeSecretFile(tokenFile, sys.Secrets.APIToken); err != nil {
		return err
	}
	defer os.Remove(tokenFile)
	// Where `make deadletters` finds the publisher's sidecar: its gRPC
	// port is picked free per run.
	portFile := filepath.Join(tools.Root, ".run", "publisher-grpc-port")
	if err := writeSecretFile(portFile, strconv.Itoa(sys.PubDaprd.GRPCPort)); err != nil {
		return err
	}
	defer os.Remove(portFile)
	say("Redis (%s) at %s", sys.Redis.Source, sys.Redis.Addr)
	if sys.Redis.Source == proc.RedisEmbedded {
		fmt.Fprintln(stdout, "WARNING: with the embedded broker the state store is Dapr's in-memory one: deduplication holds while the subscriber's sidecar runs, and `make deadletters` (another sidecar) sees no dead letters.")
	}
	if sys.Broker != nil {
		addr := sys.Broker.Addr
		if u, err := url.Parse(addr); err == nil && u.User != nil {
			addr = u.Redacted() // no password on the screen
		}
		say("%s at %s behind the pubsub component (Redis stays the state store)", sys.Broker.Kind, addr)
	}
	whose := "Redis and the sidecars"
	if sys.Broker != nil {
		whose = "Redis, the sidecars and " + sys.Broker.Kind
	}
	say("Own logs of %s: %s (their errors are shown here too)", whose, logs.list())
	if sys.Keeper != nil {
		say("Retention keeper: trims what every consumer group is done with after %s; backlog metrics at %s", sys.RetentionWindow, sys.KeeperMetrics)
	}
	if l.env.Mode == proc.ModeThroughput {
		say("Throughput mode: bulk subscribe, batches of up to %d orders, waiting at most %s", proc.ThroughputBatch, proc.ThroughputAwait)
	}
	switch sys.Env.Channel {
	case system.ChannelGRPC:
		say("Subscriber on :%d (daprd delivers over gRPC to :%d), its sidecar on :%d (gRPC :%d)", sys.Sub.Port, sys.Sub.GRPCPort, sys.Sub.Daprd.HTTPPort, sys.Sub.Daprd.GRPCPort)
	case system.ChannelStream:
		say("Subscriber on :%d (it opens subscription streams to its sidecar), its sidecar on :%d (gRPC :%d)", sys.Sub.Port, sys.Sub.Daprd.HTTPPort, sys.Sub.Daprd.GRPCPort)
	default:
		say("Subscriber on :%d (daprd delivers over HTTP), its sidecar on :%d (gRPC :%d)", sys.Sub.Port, sys.Sub.Daprd.HTTPPort, sys.Sub.Daprd.GRPCPort)
	}
	say("Live page: http://127.0.0.1:%d/?key=%s (opens the page for this run only)", sys.Sub.Port, httpch.PageKey(sys.Secrets.AppToken))
	if l.records {
		say("Record store: the subscriber's records go to state store records, served by the record store on %s", sys.Sockets)
	}
	if l.outbox {
		say("Outbox mode: the publisher stores each order in state store orderstore (key orders/<id>), and Dapr's outbox publishes it to orders when the transaction commits")
	}
	events, shuffle := cmp.Or(l.events, 1), l.shuffle
	if l.ordered {
		events = cmp.Or(l.events, len(order.Life))
		shuffle = cmp.Or(l.shuffle, l.count*events)
		say("Ordered mode: the subscriber applies each order's events in sequence; the publisher publishes each order's life of %d events shuffled", events)
	}
	say("Publisher sidecar on :%d (gRPC :%d); publishing %d orders", sys.PubDaprd.HTTPPort, sys.PubDaprd.GRPCPort, l.count)

	pub, err := sys.StartPublisher(func(c *publisher.Config) {
		c.Count, c.Interval, c.LogFormat, c.Events, c.Shuffle = l.count, l.interval, appLog, events, shuffle
	})
	if err != nil {
		return err
	}
	if err := firstExit(ctx, pub, sys.Sub.App, sys.Sub.Daprd.Process, sys.PubDaprd.Process); err != nil {
		return logs.wrap(err)
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := pub.Err(); err != nil {
		return fmt.Errorf("publisher failed: %w", err)
	}
	if !l.stay {
		return nil
	}
	say("Publisher done. The subscriber keeps running; publish more by hand (in the checkout, from another terminal):")
	fmt.Fprintln(stdout, "    "+HandCurl(sys.PubDaprd.HTTPPort, HandOrderID(l.count)))
	say("Dead letters: make deadletters (list), make deadletters ARGS=replay. Press Ctrl-C to stop.")
	return logs.wrap(firstExit(ctx, sys.Sub.App, sys.Sub.Daprd.Process, sys.PubDaprd.Process))
}

// logFiles are the own logs of a local run's processes, one file each in
// root's .run/, their problem lines to console.
type logFiles struct {
	root    string
	console io.Writer

	mu     sync.Mutex
	byName map[string]*proc.LogFile
	order  []string
	err    error // the first file that could not be opened
}

// open is system.Env.LogTo: a file for Redis, each daprd and the broker.
func (f *logFiles) open(process string) io.Writer {
	problem, armed := proc.BrokerProblem, false
	switch {
	case process == "":
		return nil // Redis is the broker: no other
	case process == "redis":
		problem, armed = proc.RedisProblem, true
	case strings.HasPrefix(process, "daprd-"):
		problem, armed = proc.DaprdProblem, true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if lf := f.byName[process]; lf != nil {
		return lf // a process started again (a test's restart) appends
	}
	dir := filepath.Join(f.root, ".run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.err = cmp.Or(f.err, err)
		return nil
	}
	lf, err := proc.OpenLogFile(filepath.Join(dir, process+".log"), f.console, problem)
	if err != nil {
		f.err = cmp.Or(f.err, err)
		return nil // its lines go to the console instead
	}
	if armed {
		lf.Arm()
	}
	f.byName[process], f.order = lf, append(f.order, process)
	return lf
}

// arm shows the problems of every file from now on (the broker's too).
func (f *logFiles) arm() {
	f.each(func(lf *proc.LogFile) { lf.Arm() })
}

// disarm stops showing them: the processes stop.
func (f *logFiles) disarm() {
	f.each(func(lf *proc.LogFile) { lf.Disarm() })
}

func (f *logFiles) close() {
	f.each(func(lf *proc.LogFile) { lf.Close() })
}

func (f *logFiles) each(do func(*proc.LogFile)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, name := range f.order {
		do(f.byName[name])
	}
}

// list is the files' paths relative to the checkout, in the order opened.
func (f *logFiles) list() string {
	var paths []string
	f.each(func(lf *proc.LogFile) { paths = append(paths, relPath(f.root, lf.Path)) })
	return strings.Join(paths, ", ")
}

// wrap adds to err where the processes' own logs are, so that a failure
// names the files that tell more; nil stays nil.
func (f *logFiles) wrap(err error) error {
	if err == nil {
		return nil
	}
	f.mu.Lock()
	n := len(f.order)
	f.mu.Unlock()
	if n == 0 {
		return err
	}
	return fmt.Errorf("%w (the processes' own logs: %s)", err, f.list())
}

// HandOrderID is the id of the order the banner's curl publishes: 1000, an
// id the publisher's orders 0…count-1 do not use (count itself if they
// reach 1000), so that it is a new order and not a conflicting duplicate.
func HandOrderID(count int) int { return max(1000, count) }

// HandCurl is the curl the banner prints (the README's, on its port): it
// publishes order id with the message "hi" through the publisher's sidecar
// at port, with the run's API token from .run/dapr-api-token.
func HandCurl(port, id int) string {
	return fmt.Sprintf(`curl -X POST localhost:%d/v1.0/publish/pubsub/orders -H "dapr-api-token: $(cat .run/dapr-api-token)" -H 'Content-Type: application/json' -d '{"id":%d,"message":"hi"}'`, port, id)
}

// checkPorts fails early, with what to do, when a fixed port is taken.
func (l local) checkPorts() error {
	p := l.sub.Ports
	for _, c := range []struct {
		port int
		what string
	}{
		{p.App, "subscriber app"}, {p.AppGRPC, "subscriber app gRPC"}, {p.HTTP, "subscriber sidecar HTTP"}, {p.GRPC, "subscriber sidecar gRPC"},
		{l.pub.HTTPPort, "publisher sidecar HTTP"}, {l.pub.GRPCPort, "publisher sidecar gRPC"},
	} {
		if c.port == 0 {
			continue
		}
		if err := proc.CheckPortFree(c.port, c.what, "stop the earlier `make run` still running, or pick another port with the flag"); err != nil {
			return err
		}
	}
	return nil
}

// writeSecretFile writes secret to path, readable by the owner only (the
// folder too).
func writeSecretFile(path, secret string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(secret), 0o600)
}

// firstExit waits for ctx to end (nil) or the first of ps to exit. The
// first process exiting is an error unless it is ps[0] ending with exit 0.
func firstExit(ctx context.Context, ps ...*proc.Process) error {
	exited := make(chan *proc.Process, len(ps))
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
		return p.ExitError()
	}
}

// relPath is path relative to root when it is inside it.
func relPath(root, path string) string {
	if rel, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}
