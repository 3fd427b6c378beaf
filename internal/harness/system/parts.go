package system

import (
	"cmp"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/recordstore"
	"dapr-pub-sub/internal/retention"
)

// The parts of a system, each with its own options, in the order they
// start: Redis, PubSub, RecordStore and Outbox when asked for, Keeper, the
// Nodes, PublisherSidecar. Each needs those before it (the resources name
// Redis and the broker; the sidecars read the resources; the subscribers'
// daprd find the record store's socket and the keeper's backlog URL), and
// stops after those behind it.

// Redis starts Redis (or finds the existing one) — the state stores, and
// the broker unless PubSub names another — and writes the Dapr resources
// folder every sidecar reads: components/ on this Redis (Dapr's in-memory
// state store on the embedded one).
type Redis struct {
	Options proc.RedisOptions // where Redis comes from; its Out is Env.LogTo("redis") or Env.Out
	// Sentinels, when set, are Redis Sentinels (comma-separated
	// host:port) watching SentinelMaster: the Redis components and the
	// retention keeper follow the primary through them (Options is then
	// an existing Redis, at the primary's address).
	Sentinels, SentinelMaster string
}

func (Redis) name() string { return "redis" }

func (Redis) rank() int { return 0 }

func (x Redis) check(p *plan) error {
	p.sentinels = x.Sentinels != ""
	return nil
}

func (x Redis) start(ctx context.Context, r *Running) (err error) {
	ro := x.Options
	ro.Out = r.logTo("redis")
	if ro.Password == "" {
		ro.Password = r.Secrets.RedisPassword
	}
	if r.Redis, err = proc.StartRedis(ctx, ro); err != nil {
		return err
	}
	r.stops = append(r.stops, r.Redis.Stop)
	r.Secrets.RedisPassword = r.Redis.Password
	r.Sentinels, r.SentinelMaster = x.Sentinels, x.SentinelMaster

	if r.Resources, err = os.MkdirTemp("", "dapr-pub-sub-resources-"); err != nil {
		return err
	}
	r.stops = append(r.stops, func() { os.RemoveAll(r.Resources) })
	if err := proc.CopyComponents(filepath.Join(r.Env.Tools.Root, "components"), r.Resources, r.Redis.Addr); err != nil {
		return err
	}
	if r.Redis.Source == proc.RedisEmbedded {
		if err := proc.UseInMemoryStateStore(r.Resources); err != nil {
			return err
		}
	}
	if r.Sentinels != "" {
		return proc.UseSentinels(r.Resources, r.Sentinels, r.SentinelMaster)
	}
	return nil
}

// PubSub is the pubsub component: the broker behind it — Redis Streams on
// the Redis part's Redis (Kind ""), or another it starts before the
// sidecars, so that it stops after them — with the mode's metadata, then
// Metadata's overrides (each must exist), e.g. {"concurrency": "32"}.
type PubSub struct {
	Kind     string // proc.BrokerRedis ("") or another of proc.Brokers
	Metadata map[string]string
}

func (PubSub) name() string { return "pubsub component" }

func (PubSub) rank() int { return 1 }

func (PubSub) check(*plan) error { return nil }

func (x PubSub) start(ctx context.Context, r *Running) (err error) {
	r.BrokerKind = x.Kind
	out := r.logTo(x.Kind)
	switch x.Kind {
	case proc.BrokerJetStream:
		r.Broker, r.JetStream, err = startJetStream(ctx, out)
	case proc.BrokerRabbitMQCluster:
		r.Broker, r.RabbitMQ, err = startRabbitMQCluster(ctx, out)
	default:
		r.Broker, err = proc.StartBroker(ctx, r.Env.Tools.Root, x.Kind, out)
	}
	if err != nil {
		return err
	}
	if r.Broker != nil {
		r.stops = append(r.stops, r.Broker.Stop)
		if err := proc.UseBroker(r.Env.Tools.Root, r.Resources, r.Broker); err != nil {
			return err
		}
	}
	if err := r.Env.Mode.Apply(r.Resources, x.Kind); err != nil {
		return err
	}
	if len(x.Metadata) == 0 {
		return nil
	}
	return proc.SetComponentMetadata(filepath.Join(r.Resources, "pubsub.yaml"), x.Metadata)
}

// recordStoreName is the record store's component (components/records/).
const recordStoreName = "records"

// RecordStore keeps the subscribers' processed-order records in the record
// store (components/records/, cmd/recordstore): a pluggable state store
// served beside their daprd that inserts a batch of records in one Redis
// script. It starts on a socket folder of its own and is waited for until
// it serves: daprd looks for pluggable components once, at start-up.
type RecordStore struct{}

func (RecordStore) name() string { return "record store" }

func (RecordStore) rank() int { return 2 }

func (RecordStore) check(*plan) error { return nil }

func (RecordStore) start(ctx context.Context, r *Running) error {
	if err := proc.CopyComponents(filepath.Join(r.Env.Tools.Root, "components", "records"), r.Resources, r.Redis.Addr); err != nil {
		return err
	}
	if r.Sentinels != "" {
		if err := proc.UseSentinels(r.Resources, r.Sentinels, r.SentinelMaster, recordStoreName+".yaml"); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "dapr-pub-sub-sockets-")
	if err != nil {
		return err
	}
	r.stops = append(r.stops, func() { os.RemoveAll(dir) })
	p := &proc.Process{Name: "recordstore", Path: filepath.Join(r.Env.Tools.BinDir, "recordstore"), Out: r.Env.Out,
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

// Outbox is the publisher's outbox mode: it stores each order in the order
// store (components/outbox/) in a state transaction, and Dapr's
// transactional outbox publishes it. On Redis, or the embedded one (with
// Dapr's in-memory store); not with Sentinels.
type Outbox struct{}

func (Outbox) name() string { return "outbox" }

func (Outbox) rank() int { return 2 }

func (Outbox) check(p *plan) error {
	if p.sentinels {
		return errors.New("the outbox mode runs on one Redis, not with Sentinels")
	}
	return nil
}

func (Outbox) start(_ context.Context, r *Running) error {
	r.Outbox = true
	if err := proc.CopyComponents(filepath.Join(r.Env.Tools.Root, "components", "outbox"), r.Resources, r.Redis.Addr); err != nil {
		return err
	}
	if r.Redis.Source == proc.RedisEmbedded {
		return proc.UseInMemoryOrderStore(r.Resources)
	}
	return nil
}

// Keeper is the retention keeper: it runs beside the apps when Redis is
// the broker (proc.Features: the keeper trims) and not the embedded one,
// and is waited for until it serves. Window is W for the keeper and the
// subscribers' records (0: retention.DefaultWindow), Interval its passes
// (0: 10 s).
type Keeper struct {
	Window, Interval time.Duration
}

func (Keeper) name() string { return "retention keeper" }

func (Keeper) rank() int { return 3 }

func (Keeper) check(*plan) error { return nil }

func (x Keeper) start(ctx context.Context, r *Running) error {
	r.RetentionWindow = cmp.Or(x.Window, retention.DefaultWindow)
	if !proc.Features(r.BrokerKind).KeeperTrims || r.Redis.Source == proc.RedisEmbedded {
		return nil // another broker deletes what is acknowledged; the embedded one is for a demo
	}
	ports, err := proc.FreePorts(1)
	if err != nil {
		return err
	}
	c := retention.DefaultConfig()
	c.RedisAddr, c.RedisPassword = r.Redis.Addr, r.Redis.Password
	c.Window = r.RetentionWindow
	c.Interval = cmp.Or(x.Interval, c.Interval)
	c.MetricsAddress = "127.0.0.1:" + strconv.Itoa(ports[0])
	if r.Sentinels != "" {
		c.Sentinels, c.MasterName = strings.Split(r.Sentinels, ","), r.SentinelMaster
	}
	if r.Outbox {
		c.Streams = append(c.Streams, OutboxStream)
	}
	p := &proc.Process{Name: "retention", Path: filepath.Join(r.Env.Tools.BinDir, "retention"), Out: r.Env.Out, Env: c.Env()}
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

func (Node) name() string { return "subscriber" }

func (Node) rank() int { return 4 }

func (Node) check(*plan) error { return nil }

// start starts the subscriber app and its daprd; the first is Running.Sub.
func (n Node) start(ctx context.Context, r *Running) error {
	s, err := r.startSubscriber(ctx, n)
	if err == nil && r.Sub == nil {
		r.Sub = s
	}
	return err
}

// PublisherSidecar is the publisher's daprd on its ports (0: a free one),
// with Args more flags; the publisher app runs later, per run
// (Running.StartPublisher).
type PublisherSidecar struct {
	HTTPPort, GRPCPort int
	Args               []string
}

func (PublisherSidecar) name() string { return "publisher's daprd" }

func (PublisherSidecar) rank() int { return 5 }

func (PublisherSidecar) check(*plan) error { return nil }

func (x PublisherSidecar) start(ctx context.Context, r *Running) (err error) {
	r.PubDaprd, err = r.startSidecar(ctx, proc.Sidecar{
		AppID: proc.PublisherID, HTTPPort: x.HTTPPort, GRPCPort: x.GRPCPort, Extra: x.Args,
	})
	return err
}
