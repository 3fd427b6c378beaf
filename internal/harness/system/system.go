// Package system brings the whole system up and down — Redis, the broker
// behind the pubsub component, the record store, the outbox's components,
// the retention keeper, the subscribers with their daprd, the publisher's
// daprd — as a list of parts, each with its own options (Redis, PubSub,
// RecordStore, Outbox, Keeper, Node, PublisherSidecar), started in order
// and stopped in reverse, with what they all share in an Env. `make run`
// (internal/harness/launcher), the integration tests and the benchmark all
// start the system through it, so a new dimension (a delivery channel, a
// Dapr version, a clustered broker) is added here once.
//
// It sits above internal/harness/proc, the process library (process groups,
// readiness, ports, the daprd build), and is modelled on dapr/dapr's
// tests/integration framework: each process declared with its options,
// started in order, cleaned up in reverse.
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

// Env is what every part of a system shares. The zero value, with Tools
// set, is what `make run` runs: the latency mode on the grpc channel, the
// sidecars at daprd's info level, output discarded.
type Env struct {
	Tools   Tools
	Mode    proc.Mode     // latency ("") or throughput: the pubsub component's metadata and the subscribers' bulk settings
	Channel Channel       // how daprd delivers to the subscribers; "" is ChannelGRPC, or ChannelHTTP in the throughput mode
	Secrets *proc.Secrets // nil: generated for this system
	Dapr    Dapr          // what every daprd runs with
	// Out gets every process's output, each line prefixed with its name.
	Out io.Writer
	// LogTo, when set, gives the writer for the output of Redis ("redis"),
	// of the broker behind pubsub when it is not Redis (its kind, e.g.
	// "rabbitmq") and of each daprd (its name, e.g. "daprd-subscriber"),
	// instead of Out (make run: a file of each's own); nil from it is Out.
	// The apps' output always goes to Out.
	LogTo func(process string) io.Writer
}

// Dapr is what every daprd of a system runs with.
type Dapr struct {
	LogLevel string   // --log-level; "" is info (a Node's own wins)
	Env      []string // more environment (NAME=value), e.g. GOGC or GOMAXPROCS
	Config   string   // the Configuration file (--config); "" is config/config.yaml
}

// OutboxStream is the stream of the outbox's internal topic outside
// Kubernetes: Dapr names it <namespace><app id><topic>outbox, and the
// namespace is "default" there.
const OutboxStream = "default" + proc.PublisherID + "orders" + "outbox"

// Node is one subscriber app with its sidecar, as asked for: a part of a
// system (the first Node is Running.Sub), or one more started later
// (Running.AddSubscriber).
type Node struct {
	AppID string // "" is proc.SubscriberID; the same id again is a replica
	Name  string // log prefix; "" is the app id
	Ports NodePorts
	// Config changes the app's settings after the system has set its
	// own (ports, tokens, mode, channel, records), e.g. faults or the log
	// level. Nil: none.
	Config func(*subscriber.Config)
	// RuntimeEnv is the Go runtime's variables for the app (GOGC=…,
	// GOMAXPROCS=…), beside its settings.
	RuntimeEnv   []string
	DaprLogLevel string   // its daprd's --log-level; "" is the Env's
	DaprArgs     []string // more flags for its daprd, e.g. --app-max-concurrency 1
	// NoAppHealthCheck turns its daprd's app health check off.
	NoAppHealthCheck bool
	OnLine           func(string) // sees every line the app prints
	// Command runs instead of the subscriber app (path, then arguments),
	// with its environment; the benchmark's bare app. Empty: the
	// subscriber.
	Command []string
}

// NodePorts are a subscriber's ports; 0 picks a free one.
type NodePorts struct {
	App     int // the app's HTTP port: probes, metrics, /stats, the live page, and deliveries on the http channel
	AppGRPC int // the app's gRPC port, where daprd delivers on the grpc channel
	HTTP    int // its daprd's HTTP API
	GRPC    int // its daprd's gRPC API (the app's state calls)
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

// Running is a started system: what its parts started and what they
// decided for the parts after them. Its fields are for the callers to
// read; Stop ends it.
type Running struct {
	Env     Env // with its defaults filled in
	Secrets proc.Secrets
	Redis   *proc.Redis
	// Sentinels and SentinelMaster are the Redis part's: Sentinels
	// (comma-separated host:port) the Redis components and the keeper
	// follow the primary through, or "".
	Sentinels, SentinelMaster string
	BrokerKind                string       // the PubSub part's: proc.BrokerRedis ("") or another
	Broker                    *proc.Broker // nil when Redis is the broker
	// JetStream is the cluster behind Broker when it is
	// proc.BrokerJetStream, for tests that fail its nodes.
	JetStream *cluster.JetStream
	// RabbitMQ is the cluster behind Broker when it is
	// proc.BrokerRabbitMQCluster.
	RabbitMQ  *cluster.RabbitMQ
	Resources string // the Dapr resources folder every sidecar reads
	// RecordStore is the record store's process when there is a
	// RecordStore part, and Sockets the folder of its socket, which the
	// subscribers' daprd read.
	RecordStore *proc.Process
	Sockets     string
	Outbox      bool          // an Outbox part: the publisher stores, Dapr's outbox publishes
	Keeper      *proc.Process // the retention keeper; nil when it does not run
	// RetentionWindow is W for the keeper and the subscribers' records.
	RetentionWindow time.Duration
	// KeeperMetrics and KeeperBacklog are the keeper's /metrics and
	// /backlog URLs; the subscribers' live pages show the backlog.
	KeeperMetrics, KeeperBacklog string
	Sub                          *Subscriber // the first subscriber (the first Node part)
	PubDaprd                     *proc.RunningSidecar

	stops []func()
}

// Part is one part of a system — a process with what it needs prepared —
// declared with its own options. Start starts the parts in the order given;
// each sees what those before it started (Running) and appends how to stop
// what it started. A system is one Redis, one PubSub, RecordStore and
// Outbox when asked for, Keeper, one or more Nodes, and PublisherSidecar,
// in that order (Start checks it).
type Part interface {
	// name says which part failed: "redis: …".
	name() string
	// rank is the part's place in a system: the parts start in
	// non-decreasing rank.
	rank() int
	// check refuses what cannot run, before anything starts, given what
	// the parts before it declared (p).
	check(p *plan) error
	// start starts the part and waits until it is ready.
	start(ctx context.Context, r *Running) error
}

// plan is what the parts declare, for their checks.
type plan struct {
	sentinels bool // the Redis part has Sentinels
}

// checkOrder refuses parts out of their order, a second Redis or PubSub
// part, and a system without Redis, PubSub, a Node or the publisher's
// sidecar.
func checkOrder(parts []Part) error {
	count := map[int]int{}
	last := 0
	for _, p := range parts {
		if p.rank() < last {
			return fmt.Errorf("%s: comes after the parts it starts on (Redis, PubSub, RecordStore and Outbox, Keeper, Nodes, PublisherSidecar)", p.name())
		}
		last = p.rank()
		count[last]++
	}
	switch {
	case count[0] != 1 || count[1] != 1:
		return errors.New("a system has one Redis part and one PubSub part")
	case count[4] == 0:
		return errors.New("a system needs a subscriber (a Node part)")
	case count[5] != 1:
		return errors.New("a system has one PublisherSidecar part")
	}
	return nil
}

// Start checks env and the parts, then brings the system up part by part,
// in order, each ready before the next; Stop takes it down in reverse. On
// error it stops what it started and says which part failed.
func Start(ctx context.Context, env Env, parts ...Part) (r *Running, err error) {
	if env, err = env.withDefaults(); err != nil {
		return nil, err
	}
	if err := checkOrder(parts); err != nil {
		return nil, err
	}
	p := &plan{}
	for _, part := range parts {
		if err := part.check(p); err != nil {
			return nil, fmt.Errorf("%s: %w", part.name(), err)
		}
	}
	r = &Running{Env: env}
	defer func() {
		if err != nil {
			r.Stop()
			r = nil
		}
	}()
	if env.Secrets != nil {
		r.Secrets = *env.Secrets
	} else {
		r.Secrets = proc.NewSecrets(func(string) string { return "" })
	}
	for _, part := range parts {
		if err := part.start(ctx, r); err != nil {
			return r, fmt.Errorf("%s: %w", part.name(), err)
		}
	}
	return r, nil
}

// withDefaults checks env and fills in its defaults.
func (env Env) withDefaults() (Env, error) {
	if env.Tools.Root == "" || env.Tools.Daprd.Path == "" || env.Tools.BinDir == "" {
		return env, errors.New("system.Start: Env.Tools is not prepared (call system.Prepare)")
	}
	if env.Out == nil {
		env.Out = io.Discard
	}
	if env.Channel == "" {
		env.Channel = ChannelGRPC
		if env.Mode == proc.ModeThroughput {
			env.Channel = ChannelHTTP
		}
	}
	if _, err := ParseChannel(string(env.Channel)); err != nil {
		return env, err
	}
	switch {
	case env.Channel == ChannelGRPC && env.Mode == proc.ModeThroughput:
		return env, errors.New("the throughput mode needs the http channel: the Go SDK's gRPC service does not implement bulk delivery")
	case env.Channel == ChannelStream && env.Mode == proc.ModeThroughput:
		return env, errors.New("the throughput mode needs the http channel: daprd has no bulk delivery on subscription streams")
	}
	if env.Channel == ChannelStream {
		if err := streamch.CheckStreamRuntime(env.Tools.Daprd.Version); err != nil {
			return env, err
		}
	}
	return env, nil
}

// logTo is where the output of process goes: Env.LogTo's writer, or Out.
func (r *Running) logTo(process string) io.Writer {
	if r.Env.LogTo != nil {
		if w := r.Env.LogTo(process); w != nil {
			return w
		}
	}
	return r.Env.Out
}

// AddSubscriber starts one more subscriber app with its sidecar (on free
// ports unless n.Ports says): a replica when n.AppID is the first's, else
// another app that subscribes on its own. Stop stops it with the rest.
func (r *Running) AddSubscriber(ctx context.Context, n Node) (*Subscriber, error) {
	return r.startSubscriber(ctx, n)
}

func (r *Running) startSubscriber(ctx context.Context, n Node) (*Subscriber, error) {
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
	appPort, appGRPCPort, httpPort := n.Ports.App, n.Ports.AppGRPC, n.Ports.HTTP
	appPort, grpcPort := cmp.Or(appPort, free[0]), cmp.Or(n.Ports.GRPC, free[1])
	// daprd delivers to the app's HTTP port, on the grpc channel to its
	// gRPC port, and on the stream channel on the streams the app opens
	// (no app port); the HTTP port always serves probes and the page.
	channel := r.Env.Channel
	deliverPort, proto, appGRPC := appPort, "http", 0
	switch channel {
	case ChannelGRPC:
		appGRPCPort = cmp.Or(appGRPCPort, free[2])
		deliverPort, proto, appGRPC = appGRPCPort, "grpc", appGRPCPort
	case ChannelStream:
		deliverPort, proto = 0, ""
	}
	c := subscriber.DefaultConfig()
	c.AppID, c.Port, c.Channel, c.DaprAddress = n.AppID, appPort, string(channel), "127.0.0.1:"+strconv.Itoa(grpcPort)
	if appGRPC != 0 {
		c.GRPCPort = appGRPC
	}
	c.DaprAPIToken, c.AppToken = r.Secrets.APIToken, r.Secrets.AppToken
	if batch, await := r.Env.Mode.Bulk(); batch > 0 {
		c.Bulk.MaxMessages, c.Bulk.MaxAwait = batch, await
	}
	c.RetentionWindow = cmp.Or(r.RetentionWindow, retention.DefaultWindow)
	c.BacklogURL = r.KeeperBacklog
	var daprEnv []string
	if r.Sockets != "" && n.AppID == proc.SubscriberID { // the component is scoped to it
		c.RecordStore = recordStoreName
		daprEnv = []string{recordstore.SocketsFolderEnv + "=" + r.Sockets}
	}
	c.SubscriptionMetadata = proc.Features(r.BrokerKind).SubscriptionMetadata
	if n.Config != nil {
		n.Config(&c)
	}
	app, err := proc.StartSubscriberApp(ctx, proc.SubscriberApp{
		Name: n.Name, BinDir: r.Env.Tools.BinDir, Command: n.Command, Port: appPort, Env: append(c.Env(), n.RuntimeEnv...), Out: r.Env.Out, OnLine: n.OnLine,
	})
	if err != nil {
		return nil, err
	}
	// Stopped in reverse: daprd first (no new deliveries), then the app —
	// but on streams the app first: it closes the streams it opened and
	// finishes what it holds; its daprd gone first would cut them, and the
	// app would warn of lost streams at every stop.
	stopApp := func() { app.Stop(proc.StopGrace) }
	if channel != ChannelStream {
		r.stops = append(r.stops, stopApp)
	}
	d, err := r.startSidecar(ctx, proc.Sidecar{
		Name: "daprd-" + n.Name, AppID: n.AppID, AppPort: deliverPort, AppProto: proto, HTTPPort: httpPort, GRPCPort: grpcPort, LogLevel: n.DaprLogLevel,
		Extra: n.DaprArgs, NoAppHealthCheck: n.NoAppHealthCheck, Env: daprEnv,
	})
	if channel == ChannelStream {
		r.stops = append(r.stops, stopApp)
	}
	if err != nil {
		return nil, err
	}
	if channel == ChannelStream {
		// daprd is ready before the app has opened its streams; the
		// app's readiness says when it has.
		if err := proc.WaitAppReady(ctx, app, appPort); err != nil {
			return nil, err
		}
	}
	return &Subscriber{App: app, Daprd: d, Port: appPort, GRPCPort: appGRPC, Node: n, Config: c}, nil
}

// startSidecar starts a daprd with what every sidecar of the system shares:
// the secrets, the Configuration, the resources, the log level.
func (r *Running) startSidecar(ctx context.Context, sc proc.Sidecar) (*proc.RunningSidecar, error) {
	sc.Secrets = r.Secrets
	sc.Config = cmp.Or(r.Env.Dapr.Config, filepath.Join(r.Env.Tools.Root, "config", "config.yaml"))
	sc.Resources = r.Resources
	sc.Env = append(sc.Env, r.Env.Dapr.Env...)
	if sc.LogLevel == "" {
		sc.LogLevel = r.Env.Dapr.LogLevel
	}
	if sc.Name == "" {
		sc.Name = "daprd-" + sc.AppID
	}
	d, err := proc.StartSidecar(ctx, r.Env.Tools.Daprd, sc, r.logTo(sc.Name))
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
	c.DaprAddress, c.DaprAPIToken, c.Outbox = r.PubDaprd.GRPCAddr(), r.Secrets.APIToken, r.Outbox
	if change != nil {
		change(&c)
	}
	p := &proc.Process{
		Name: proc.PublisherID, Path: filepath.Join(r.Env.Tools.BinDir, proc.PublisherID), Out: r.Env.Out, Env: c.Env(),
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
