// Package system declares the whole system — Redis, the broker behind the
// pubsub component, the subscriber app and its daprd, the publisher's daprd
// — as one value, a Spec, and brings it up and down in order. `make run`
// (internal/harness/launcher), the integration tests and the benchmark all
// start the system through it, so a new dimension (a delivery channel, a
// Dapr version, a clustered broker) is added here once.
//
// It sits above internal/harness/proc, the process library (process groups,
// readiness, ports, the daprd build), and is modelled on dapr/dapr's
// tests/integration framework: processes declared, started in order, stopped
// in reverse.
package system

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"dapr-pub-sub/internal/harness/cluster"
	"dapr-pub-sub/internal/harness/hosts"
	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/recordstore"
	"dapr-pub-sub/internal/retention"
	"dapr-pub-sub/internal/subscriber"
	"dapr-pub-sub/internal/subscriber/streamch"
)

// Tools are what every system of one program run shares: the repository,
// the daprd binary and the built apps. Prepare makes them.
type Tools struct {
	Root   string     // the repository root
	Daprd  proc.Daprd // the sidecar binary
	BinDir string     // where the publisher, subscriber and deadletters binaries are
}

// Prepare finds or builds daprd of the Dapr runtime version ("" for the
// default, tools/daprd/go.mod) and builds the apps into a new temporary
// folder; the returned func removes it.
func Prepare(ctx context.Context, version string, log io.Writer) (Tools, func(), error) {
	root, err := proc.RepoRoot()
	if err != nil {
		return Tools{}, nil, err
	}
	d, err := proc.FindDaprd(ctx, root, version, log)
	if err != nil {
		return Tools{}, nil, err
	}
	dir, err := os.MkdirTemp("", "dapr-pub-sub-bin-")
	if err != nil {
		return Tools{}, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	fmt.Fprintln(log, "==> Building the publisher, the subscriber, the dead-letter tool and the retention keeper (about 30 s the first time)")
	if err := proc.BuildApps(ctx, root, dir); err != nil {
		cleanup()
		return Tools{}, nil, err
	}
	return Tools{Root: root, Daprd: d, BinDir: dir}, cleanup, nil
}

// Channel is how the subscriber's daprd delivers events to the app.
type Channel string

// Delivery channels. See the subscriber's -channel.
const (
	// ChannelGRPC: daprd calls the app's gRPC service (--app-protocol
	// grpc). Never acknowledges an order the app did not answer. The
	// default in the latency mode.
	ChannelGRPC Channel = subscriber.ChannelGRPC
	// ChannelStream: the app opens a streaming subscription to its daprd
	// per topic; daprd has no app channel. The latency mode only.
	ChannelStream Channel = subscriber.ChannelStream
	// ChannelHTTP: daprd POSTs each event to the app's route, the original example's
	// shape. The throughput mode needs it (bulk subscribe).
	ChannelHTTP Channel = subscriber.ChannelHTTP
)

// Channels are the delivery channels daprd version runs safely: all of
// them from 1.18 on, grpc and http before (streamch.CheckStreamRuntime).
func Channels(version string) []Channel {
	var out []Channel
	for _, c := range subscriber.Channels {
		if Channel(c) != ChannelStream || streamch.CheckStreamRuntime(version) == nil {
			out = append(out, Channel(c))
		}
	}
	return out
}

// ParseChannel checks s ("" is the mode's default).
func ParseChannel(s string) (Channel, error) {
	switch c := Channel(s); c {
	case "", ChannelGRPC, ChannelStream, ChannelHTTP:
		return c, nil
	}
	return "", fmt.Errorf("unknown channel %q: grpc, stream or http", s)
}

// Ports are the system's fixed ports; 0 picks a free one.
type Ports struct {
	App     int // the subscriber app's HTTP port: probes, metrics, the live page, and deliveries on the http channel
	AppGRPC int // the subscriber app's gRPC port, where daprd delivers on the grpc channel
	SubHTTP int // the subscriber's daprd, HTTP API
	SubGRPC int // the subscriber's daprd, gRPC API (the app's state calls)
	PubHTTP int // the publisher's daprd, HTTP API
	PubGRPC int // the publisher's daprd, gRPC API (the publisher's calls)
}

// Spec is one system. The zero value, with Tools set, is what `make run`
// starts on free ports: redis-server, Redis Streams behind pubsub, the
// latency mode, the HTTP channel.
type Spec struct {
	Tools   Tools
	Redis   proc.RedisOptions // where Redis (the state store, and the default broker) comes from; its Out is LogTo("redis") or Out
	Broker  string            // behind the pubsub component: proc.BrokerRedis ("") or another of proc.Brokers
	Mode    proc.Mode         // latency ("") or throughput
	Channel Channel           // how daprd delivers to the subscriber; "" is ChannelGRPC, or ChannelHTTP in the throughput mode
	Secrets *proc.Secrets     // nil: generated for this system
	Ports   Ports

	// Subscriber is what the first subscriber app gets beyond what the
	// spec decides (port, tokens, mode); AddSubscriber starts more.
	Subscriber Node
	// DaprLogLevel is every daprd's --log-level; "" is info.
	DaprLogLevel string
	// PubDaprArgs are more flags for the publisher's daprd (the
	// subscribers' are in their Node).
	PubDaprArgs []string
	// DaprEnv is more environment for every daprd (NAME=value), e.g.
	// GOGC or GOMAXPROCS.
	DaprEnv []string
	// DaprConfig is the Configuration file every daprd reads (--config);
	// "" is config/config.yaml.
	DaprConfig string
	// Sentinels, when set, are Redis Sentinels (comma-separated
	// host:port) watching SentinelMaster: the Redis components and the
	// retention keeper follow the primary through them (Redis is then an
	// existing one, at the primary's address).
	Sentinels, SentinelMaster string
	// PubSubMetadata overrides items of the pubsub component's metadata
	// (after the mode's), e.g. {"concurrency": "32"}; each must exist.
	PubSubMetadata map[string]string
	// Retention is the retention keeper's settings: Window is W for the
	// keeper and the subscribers' records (0: retention.DefaultWindow),
	// Interval its passes (0: 10 s). The keeper runs beside the apps when
	// Redis is the broker and not the embedded one.
	Retention Retention
	// Outbox is the publisher's outbox mode: it stores each order in the
	// order store (components/outbox/) in a state transaction, and Dapr's
	// transactional outbox publishes it. Redis, or the embedded one (with
	// Dapr's in-memory store); not with Sentinels.
	Outbox bool
	// Records keeps the subscribers' processed-order records in the
	// record store (components/records/, cmd/recordstore): a pluggable
	// state store served beside their daprd that inserts a batch of
	// records in one Redis script.
	Records bool
	// Out gets every process's output, each line prefixed with its name.
	Out io.Writer
	// LogTo, when set, gives the writer for the output of Redis ("redis"),
	// of the broker behind pubsub when it is not Redis (its kind, e.g.
	// "rabbitmq") and of each daprd (its name, e.g. "daprd-subscriber"),
	// instead of Out (make run: a file of each's own); nil from it is Out.
	// The apps' output always goes to Out.
	LogTo func(process string) io.Writer
}

// logTo is where the output of process goes: Spec.LogTo's writer, or Out.
func (r *Running) logTo(process string) io.Writer {
	if r.Spec.LogTo != nil {
		if w := r.Spec.LogTo(process); w != nil {
			return w
		}
	}
	return r.Spec.Out
}

// OutboxStream is the stream of the outbox's internal topic outside
// Kubernetes: Dapr names it <namespace><app id><topic>outbox, and the
// namespace is "default" there.
const OutboxStream = "default" + proc.PublisherID + "orders" + "outbox"

// Retention is the retention keeper's part of a spec.
type Retention struct {
	Window, Interval time.Duration
}

// Node is one subscriber app with its sidecar, as asked for.
type Node struct {
	AppID string // "" is proc.SubscriberID; the same id again is a replica
	Name  string // log prefix; "" is the app id
	// Config changes the app's settings after the system has set its
	// own (ports, tokens, mode, channel, records), e.g. faults or the log
	// level. Nil: none.
	Config func(*subscriber.Config)
	// RuntimeEnv is the Go runtime's variables for the app (GOGC=…,
	// GOMAXPROCS=…), beside its settings.
	RuntimeEnv   []string
	DaprLogLevel string   // its daprd's --log-level; "" is the spec's
	DaprArgs     []string // more flags for its daprd, e.g. --app-max-concurrency 1
	// NoAppHealthCheck turns its daprd's app health check off.
	NoAppHealthCheck bool
	OnLine           func(string) // sees every line the app prints
	// Command runs instead of the subscriber app (path, then arguments),
	// with its environment; the benchmark's bare app. Empty: the
	// subscriber.
	Command []string
}

// Subscriber is a running subscriber app and its sidecar.
type Subscriber struct {
	App      *proc.Process
	Daprd    *proc.RunningSidecar
	Port     int // its HTTP port: probes, metrics, /stats, the live page
	GRPCPort int // its gRPC port on the grpc channel, else 0
	Node     Node
	Config   subscriber.Config // what the app was started with
}

// Reconfigure changes the settings the app gets from its next start on
// (App.Restart).
func (s *Subscriber) Reconfigure(change func(*subscriber.Config)) {
	change(&s.Config)
	s.App.Env = append(s.Config.Env(), s.Node.RuntimeEnv...)
}

// Running is a started system. Its fields are for the callers to read; Stop
// ends it.
type Running struct {
	Spec    Spec
	Secrets proc.Secrets
	Redis   *proc.Redis
	Broker  *proc.Broker // nil when Redis is the broker
	// JetStream is the cluster behind Broker when it is
	// proc.BrokerJetStream, for tests that fail its nodes.
	JetStream *cluster.JetStream
	// RabbitMQ is the cluster behind Broker when it is
	// proc.BrokerRabbitMQCluster.
	RabbitMQ  *cluster.RabbitMQ
	Resources string // the Dapr resources folder every sidecar reads
	// RecordStore is the record store's process when Spec.Records, and
	// Sockets the folder of its socket, which the subscribers' daprd read.
	RecordStore *proc.Process
	Sockets     string
	Sub         *Subscriber // the first subscriber
	PubDaprd    *proc.RunningSidecar
	Keeper      *proc.Process // the retention keeper; nil when it does not run
	// KeeperMetrics and KeeperBacklog are the keeper's /metrics and
	// /backlog URLs; the subscribers' live pages show the backlog.
	KeeperMetrics, KeeperBacklog string

	stops []func()
}

// Start brings the system up part by part, in order (parts), and waits
// for each to be ready; Stop takes it down in reverse. On error it stops
// what it started and says which part failed.
func Start(ctx context.Context, spec Spec) (r *Running, err error) {
	if spec, err = spec.withDefaults(); err != nil {
		return nil, err
	}
	r = &Running{Spec: spec} // with the defaults filled in
	defer func() {
		if err != nil {
			r.Stop()
			r = nil
		}
	}()
	if spec.Secrets != nil {
		r.Secrets = *spec.Secrets
	} else {
		r.Secrets = proc.NewSecrets(func(string) string { return "" })
	}
	for _, p := range r.parts() {
		if err := p.start(ctx); err != nil {
			return r, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return r, nil
}

// part is one step of bringing a system up: it starts something, waits
// until it is ready, and appends to r.stops how to take it down.
type part struct {
	name  string
	start func(context.Context) error
}

// parts are the system's parts in the order they start: each needs those
// before it (the resources name Redis and the broker; the sidecars read
// the resources; the subscribers' daprd find the record store's socket
// and the keeper's backlog URL), and stops after those behind it.
func (r *Running) parts() []part {
	return []part{
		{"redis", r.startRedis},
		{"resources", r.writeResources},
		{"broker", r.startBroker},
		{"pubsub component", r.tunePubSub},
		{"record store", r.startRecordStore},
		{"retention keeper", r.startKeeper},
		{"subscriber", r.startFirstSubscriber},
		{"publisher's daprd", r.startPublisherSidecar},
	}
}

// withDefaults checks spec and fills in its defaults.
func (spec Spec) withDefaults() (Spec, error) {
	if spec.Tools.Root == "" || spec.Tools.Daprd.Path == "" || spec.Tools.BinDir == "" {
		return spec, errors.New("system.Start: Spec.Tools is not prepared (call system.Prepare)")
	}
	if spec.Out == nil {
		spec.Out = io.Discard
	}
	if spec.Channel == "" {
		spec.Channel = ChannelGRPC
		if spec.Mode == proc.ModeThroughput {
			spec.Channel = ChannelHTTP
		}
	}
	if _, err := ParseChannel(string(spec.Channel)); err != nil {
		return spec, err
	}
	switch {
	case spec.Channel == ChannelGRPC && spec.Mode == proc.ModeThroughput:
		return spec, errors.New("the throughput mode needs the http channel: the Go SDK's gRPC service does not implement bulk delivery")
	case spec.Channel == ChannelStream && spec.Mode == proc.ModeThroughput:
		return spec, errors.New("the throughput mode needs the http channel: daprd has no bulk delivery on subscription streams")
	case spec.Sentinels != "" && spec.Outbox:
		return spec, errors.New("the outbox mode runs on one Redis, not with Sentinels")
	}
	if spec.Channel == ChannelStream {
		if err := streamch.CheckStreamRuntime(spec.Tools.Daprd.Version); err != nil {
			return spec, err
		}
	}
	return spec, nil
}

// startRedis starts Redis (or finds the existing one): the state stores,
// and the broker unless another is asked for.
func (r *Running) startRedis(ctx context.Context) (err error) {
	ro := r.Spec.Redis
	ro.Out = r.logTo("redis")
	if ro.Password == "" {
		ro.Password = r.Secrets.RedisPassword
	}
	if r.Redis, err = proc.StartRedis(ctx, ro); err != nil {
		return err
	}
	r.stops = append(r.stops, r.Redis.Stop)
	r.Secrets.RedisPassword = r.Redis.Password
	return nil
}

// writeResources writes the Dapr resources folder every sidecar reads:
// components/ on this Redis, with the record store's and the outbox's
// components when asked for, through the Sentinels when there are some.
func (r *Running) writeResources(context.Context) (err error) {
	spec := r.Spec
	if r.Resources, err = os.MkdirTemp("", "dapr-pub-sub-resources-"); err != nil {
		return err
	}
	r.stops = append(r.stops, func() { os.RemoveAll(r.Resources) })
	embedded := r.Redis.Source == proc.RedisEmbedded
	if err := proc.CopyComponents(filepath.Join(spec.Tools.Root, "components"), r.Resources, r.Redis.Addr); err != nil {
		return err
	}
	if embedded {
		if err := proc.UseInMemoryStateStore(r.Resources); err != nil {
			return err
		}
	}
	var sentinelled []string // more Redis components to point at the Sentinels
	if spec.Records {
		if err := proc.CopyComponents(filepath.Join(spec.Tools.Root, "components", "records"), r.Resources, r.Redis.Addr); err != nil {
			return err
		}
		sentinelled = append(sentinelled, recordStoreName+".yaml")
	}
	if spec.Sentinels != "" {
		if err := proc.UseSentinels(r.Resources, spec.Sentinels, spec.SentinelMaster, sentinelled...); err != nil {
			return err
		}
	}
	if spec.Outbox {
		if err := proc.CopyComponents(filepath.Join(spec.Tools.Root, "components", "outbox"), r.Resources, r.Redis.Addr); err != nil {
			return err
		}
		if embedded {
			return proc.UseInMemoryOrderStore(r.Resources)
		}
	}
	return nil
}

// startBroker starts the broker behind "pubsub" when it is not Redis —
// before the sidecars, so that it stops after them — and points the
// component at it.
func (r *Running) startBroker(ctx context.Context) (err error) {
	out := r.logTo(r.Spec.Broker)
	switch r.Spec.Broker {
	case proc.BrokerJetStream:
		r.Broker, r.JetStream, err = startJetStream(ctx, out)
	case proc.BrokerRabbitMQCluster:
		r.Broker, r.RabbitMQ, err = startRabbitMQCluster(ctx, out)
	default:
		r.Broker, err = proc.StartBroker(ctx, r.Spec.Tools.Root, r.Spec.Broker, out)
	}
	if err != nil || r.Broker == nil {
		return err
	}
	r.stops = append(r.stops, r.Broker.Stop)
	return proc.UseBroker(r.Spec.Tools.Root, r.Resources, r.Broker)
}

// tunePubSub sets the pubsub component's metadata for the mode, then the
// spec's own overrides.
func (r *Running) tunePubSub(context.Context) error {
	if err := r.Spec.Mode.Apply(r.Resources, r.Spec.Broker); err != nil {
		return err
	}
	if len(r.Spec.PubSubMetadata) == 0 {
		return nil
	}
	return proc.SetComponentMetadata(filepath.Join(r.Resources, "pubsub.yaml"), r.Spec.PubSubMetadata)
}

// startFirstSubscriber starts the first subscriber app and its daprd on
// the spec's ports.
func (r *Running) startFirstSubscriber(ctx context.Context) (err error) {
	p := r.Spec.Ports
	r.Sub, err = r.startSubscriber(ctx, r.Spec.Subscriber, p.App, p.AppGRPC, p.SubHTTP, p.SubGRPC)
	return err
}

// startPublisherSidecar starts the publisher's daprd; the publisher app
// runs later, per run (StartPublisher).
func (r *Running) startPublisherSidecar(ctx context.Context) (err error) {
	r.PubDaprd, err = r.startSidecar(ctx, proc.Sidecar{
		AppID: proc.PublisherID, HTTPPort: r.Spec.Ports.PubHTTP, GRPCPort: r.Spec.Ports.PubGRPC, Extra: r.Spec.PubDaprArgs,
	})
	return err
}

// AddSubscriber starts one more subscriber app with its sidecar on free
// ports: a replica when n.AppID is the first's, else another app that
// subscribes on its own. Stop stops it with the rest.
func (r *Running) AddSubscriber(ctx context.Context, n Node) (*Subscriber, error) {
	return r.startSubscriber(ctx, n, 0, 0, 0, 0)
}

func (r *Running) startSubscriber(ctx context.Context, n Node, appPort, appGRPCPort, httpPort, grpcPort int) (*Subscriber, error) {
	if n.AppID == "" {
		n.AppID = proc.SubscriberID
	}
	if n.Name == "" {
		n.Name = n.AppID
	}
	free, err := proc.FreePorts(3)
	if err != nil {
		return nil, err
	}
	appPort, grpcPort = cmp.Or(appPort, free[0]), cmp.Or(grpcPort, free[1])
	// daprd delivers to the app's HTTP port, on the grpc channel to its
	// gRPC port, and on the stream channel on the streams the app opens
	// (no app port); the HTTP port always serves probes and the page.
	deliverPort, proto, appGRPC := appPort, "http", 0
	switch r.Spec.Channel {
	case ChannelGRPC:
		appGRPCPort = cmp.Or(appGRPCPort, free[2])
		deliverPort, proto, appGRPC = appGRPCPort, "grpc", appGRPCPort
	case ChannelStream:
		deliverPort, proto = 0, ""
	}
	c := subscriber.DefaultConfig()
	c.AppID, c.Port, c.Channel, c.DaprAddress = n.AppID, appPort, string(r.Spec.Channel), "127.0.0.1:"+strconv.Itoa(grpcPort)
	if appGRPC != 0 {
		c.GRPCPort = appGRPC
	}
	c.DaprAPIToken, c.AppToken = r.Secrets.APIToken, r.Secrets.AppToken
	if batch, await := r.Spec.Mode.Bulk(); batch > 0 {
		c.Bulk.MaxMessages, c.Bulk.MaxAwait = batch, await
	}
	c.RetentionWindow = cmp.Or(r.Spec.Retention.Window, retention.DefaultWindow)
	c.BacklogURL = r.KeeperBacklog
	var daprEnv []string
	if r.Sockets != "" && n.AppID == proc.SubscriberID { // the component is scoped to it
		c.RecordStore = recordStoreName
		daprEnv = []string{recordstore.SocketsFolderEnv + "=" + r.Sockets}
	}
	c.SubscriptionMetadata = proc.Features(r.Spec.Broker).SubscriptionMetadata
	if n.Config != nil {
		n.Config(&c)
	}
	app, err := proc.StartSubscriberApp(ctx, proc.SubscriberApp{
		Name: n.Name, BinDir: r.Spec.Tools.BinDir, Command: n.Command, Port: appPort, Env: append(c.Env(), n.RuntimeEnv...), Out: r.Spec.Out, OnLine: n.OnLine,
	})
	if err != nil {
		return nil, err
	}
	// Stopped in reverse: daprd first (no new deliveries), then the app —
	// but on streams the app first: it closes the streams it opened and
	// finishes what it holds; its daprd gone first would cut them, and the
	// app would warn of lost streams at every stop.
	stopApp := func() { app.Stop(proc.StopGrace) }
	if r.Spec.Channel != ChannelStream {
		r.stops = append(r.stops, stopApp)
	}
	d, err := r.startSidecar(ctx, proc.Sidecar{
		Name: "daprd-" + n.Name, AppID: n.AppID, AppPort: deliverPort, AppProto: proto, HTTPPort: httpPort, GRPCPort: grpcPort, LogLevel: n.DaprLogLevel,
		Extra: n.DaprArgs, NoAppHealthCheck: n.NoAppHealthCheck, Env: daprEnv,
	})
	if r.Spec.Channel == ChannelStream {
		r.stops = append(r.stops, stopApp)
	}
	if err != nil {
		return nil, err
	}
	if r.Spec.Channel == ChannelStream {
		// daprd is ready before the app has opened its streams; the
		// app's readiness says when it has.
		if err := proc.WaitAppReady(ctx, app, appPort); err != nil {
			return nil, err
		}
	}
	return &Subscriber{App: app, Daprd: d, Port: appPort, GRPCPort: appGRPC, Node: n, Config: c}, nil
}

// recordStoreName is the record store's component (components/records/).
const recordStoreName = "records"

// startRecordStore starts the record store when Spec.Records (its
// component is in the resources already) on a socket folder of its own,
// waiting until it serves: daprd looks for pluggable components once, at
// start-up.
func (r *Running) startRecordStore(ctx context.Context) error {
	if !r.Spec.Records {
		return nil
	}
	dir, err := os.MkdirTemp("", "dapr-pub-sub-sockets-")
	if err != nil {
		return err
	}
	r.stops = append(r.stops, func() { os.RemoveAll(dir) })
	p := &proc.Process{Name: "recordstore", Path: filepath.Join(r.Spec.Tools.BinDir, "recordstore"), Out: r.Spec.Out,
		Env: []string{recordstore.SocketsFolderEnv + "=" + dir}} // Dapr's variable, which daprd reads too
	if err := p.Start(); err != nil {
		return err
	}
	r.stops = append(r.stops, func() { p.Stop(proc.StopGrace) })
	if err := proc.WaitUnix(ctx, recordstore.SocketPath(func(string) string { return dir }), p); err != nil {
		return err
	}
	r.RecordStore, r.Sockets = p, dir
	return nil
}

// startKeeper starts the retention keeper on Redis, when Redis is the
// broker (and not the embedded one), and waits until it serves.
func (r *Running) startKeeper(ctx context.Context) error {
	if !proc.Features(r.Spec.Broker).KeeperTrims || r.Redis.Source == proc.RedisEmbedded {
		return nil // another broker deletes what is acknowledged; the embedded one is for a demo
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		return err
	}
	c := retention.DefaultConfig()
	c.RedisAddr, c.RedisPassword = r.Redis.Addr, r.Redis.Password
	c.Window = cmp.Or(r.Spec.Retention.Window, retention.DefaultWindow)
	c.Interval = cmp.Or(r.Spec.Retention.Interval, c.Interval)
	c.MetricsAddress = "127.0.0.1:" + strconv.Itoa(ports[0])
	if r.Spec.Sentinels != "" {
		c.Sentinels, c.MasterName = strings.Split(r.Spec.Sentinels, ","), r.Spec.SentinelMaster
	}
	if r.Spec.Outbox {
		c.Streams = append(c.Streams, OutboxStream)
	}
	p := &proc.Process{Name: "retention", Path: filepath.Join(r.Spec.Tools.BinDir, "retention"), Out: r.Spec.Out, Env: c.Env()}
	if err := p.Start(); err != nil {
		return err
	}
	r.stops = append(r.stops, func() { p.Stop(proc.StopGrace) })
	if err := proc.WaitApp(ctx, p, ports[0]); err != nil { // it serves /healthz
		return err
	}
	r.Keeper, r.KeeperMetrics, r.KeeperBacklog = p, "http://"+c.MetricsAddress+"/metrics", "http://"+c.MetricsAddress+"/backlog"
	return nil
}

// startSidecar starts a daprd with what every sidecar of the system shares:
// the secrets, the Configuration, the resources, the log level.
func (r *Running) startSidecar(ctx context.Context, sc proc.Sidecar) (*proc.RunningSidecar, error) {
	sc.Secrets = r.Secrets
	sc.Config = cmp.Or(r.Spec.DaprConfig, filepath.Join(r.Spec.Tools.Root, "config", "config.yaml"))
	sc.Resources = r.Resources
	sc.Env = append(sc.Env, r.Spec.DaprEnv...)
	if sc.LogLevel == "" {
		sc.LogLevel = r.Spec.DaprLogLevel
	}
	if sc.Name == "" {
		sc.Name = "daprd-" + sc.AppID
	}
	d, err := proc.StartSidecar(ctx, r.Spec.Tools.Daprd, sc, r.logTo(sc.Name))
	if err != nil {
		return nil, err
	}
	r.stops = append(r.stops, func() { d.Stop(proc.StopGrace) })
	return d, nil
}

// StartPublisher starts the publisher binary against the publisher's
// sidecar, with the system's settings (its sidecar, token, outbox mode)
// changed by change (nil: none); it runs until it has published, so the
// caller waits for it. Stop stops it if it still runs.
func (r *Running) StartPublisher(change func(*publisher.Config)) (*proc.Process, error) {
	c := publisher.DefaultConfig()
	c.DaprAddress, c.DaprAPIToken, c.Outbox = r.PubDaprd.GRPCAddr(), r.Secrets.APIToken, r.Spec.Outbox
	if change != nil {
		change(&c)
	}
	p := &proc.Process{
		Name: proc.PublisherID, Path: filepath.Join(r.Spec.Tools.BinDir, proc.PublisherID), Out: r.Spec.Out, Env: c.Env(),
	}
	if err := p.Start(); err != nil {
		return nil, err
	}
	r.stops = append(r.stops, func() { p.Stop(proc.StopGrace) })
	return p, nil
}

// Processes are the system's long-running processes: Redis (when started
// here), the other broker, the retention keeper, the first subscriber and
// its daprd, the publisher's daprd.
func (r *Running) Processes() []*proc.Process {
	var ps []*proc.Process
	if p := r.Redis.Process(); p != nil {
		ps = append(ps, p)
	}
	if r.Broker != nil {
		ps = append(ps, r.Broker.Process())
	}
	if r.Keeper != nil {
		ps = append(ps, r.Keeper)
	}
	if r.RecordStore != nil {
		ps = append(ps, r.RecordStore)
	}
	return append(ps, r.Sub.App, r.Sub.Daprd.Process, r.PubDaprd.Process)
}

// Stop stops everything Start and the Running's methods started, in
// reverse order, and removes the resources folder. It is safe to call more
// than once.
func (r *Running) Stop() {
	for i := len(r.stops) - 1; i >= 0; i-- {
		r.stops[i]()
	}
	r.stops = nil
}

// jetStreamSubjects are the topics the JetStream cluster keeps a stream
// for (the component creates none): every topic of components/.
var jetStreamSubjects = []string{"orders", "orders-deadletter", "audit-deadletter"}

// startRabbitMQCluster starts RabbitMQ as three nodes on test hosts of our
// own, with a user "orders" and a password of its own.
func startRabbitMQCluster(ctx context.Context, out io.Writer) (*proc.Broker, *cluster.RabbitMQ, error) {
	n, err := hosts.New("rqb", hosts.DefaultSubnet)
	if err != nil {
		return nil, nil, err
	}
	rq, err := cluster.StartRabbitMQ(ctx, n, "orders", rand.Text(), out)
	if err != nil {
		n.Close()
		return nil, nil, err
	}
	return proc.NewBroker(proc.BrokerRabbitMQCluster, rq.URL(), func() { rq.Stop(); n.Close() }), rq, nil
}

// startJetStream starts NATS JetStream as three nodes on test hosts of our
// own, with a three-replica stream per topic.
func startJetStream(ctx context.Context, out io.Writer) (*proc.Broker, *cluster.JetStream, error) {
	n, err := hosts.New("jsb", hosts.DefaultSubnet)
	if err != nil {
		return nil, nil, err
	}
	js, err := cluster.StartJetStream(ctx, n, jetStreamSubjects, out)
	if err != nil {
		n.Close()
		return nil, nil, err
	}
	return proc.NewBroker(proc.BrokerJetStream, js.URLs(), func() { js.Stop(); n.Close() }), js, nil
}
