package proc

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// Brokers behind the "pubsub" component. Redis always runs as well: it is
// the state store that makes processing idempotent.
const (
	BrokerRedis    = "redis"    // components/pubsub.yaml: Redis Streams (the original example's)
	BrokerRabbitMQ = "rabbitmq" // components/brokers/rabbitmq.yaml: Debian's rabbitmq-server
	BrokerMQTT     = "mqtt"     // components/brokers/mqtt.yaml: Debian's mosquitto
	BrokerKafka    = "kafka"    // components/brokers/kafka.yaml: tools/kafka-fake (franz-go's kfake)
	// BrokerJetStream is NATS JetStream, three nodes on test hosts of our
	// own (components/brokers/jetstream.yaml); system.Start starts it
	// through internal/cluster, not StartBroker. Needs root.
	BrokerJetStream = "jetstream"
	// BrokerRabbitMQCluster is RabbitMQ, three nodes on test hosts of our
	// own with quorum queues (the rabbitmq.yaml component, through a
	// balancer; the subscribers ask for queueType=quorum); system.Start
	// starts it through internal/cluster. Needs root. Not in Brokers:
	// the portability suite runs on the single node.
	BrokerRabbitMQCluster = "rabbitmq-cluster"
)

// Brokers lists the broker names in the order the tests use them.
var Brokers = []string{BrokerRedis, BrokerRabbitMQ, BrokerMQTT, BrokerKafka, BrokerJetStream}

// BrokerFeatures is what a broker behind "pubsub" does, for the system and
// the tests to ask instead of its name — as Watermill's pub/sub test
// suite has each backend declare its Features.
type BrokerFeatures struct {
	// ConsumerGroups: the replicas of one app id share a topic's
	// messages. MQTT 3 has none: replicas would share one client id and
	// knock each other off.
	ConsumerGroups bool
	// DedupesPublishes: the broker itself drops a re-publish of a
	// CloudEvent id it has stored (JetStream: the id is the Nats-Msg-Id,
	// deduplicated within the stream's window, 2 min).
	DedupesPublishes bool
	// KeeperTrims: what is acknowledged stays until the retention keeper
	// trims it (Redis Streams); the other brokers delete it themselves.
	KeeperTrims bool
	// Clustered: three nodes on test hosts of our own (root), started
	// through internal/harness/cluster.
	Clustered bool
	// SubscriptionMetadata is what every subscription must carry on this
	// broker (RabbitMQ's quorum queues, replicated on the three nodes).
	SubscriptionMetadata map[string]string
}

// Features is what broker does ("" is Redis); an unknown name has none.
func Features(broker string) BrokerFeatures {
	switch broker {
	case "", BrokerRedis:
		return BrokerFeatures{ConsumerGroups: true, KeeperTrims: true}
	case BrokerRabbitMQ, BrokerKafka:
		return BrokerFeatures{ConsumerGroups: true}
	case BrokerJetStream:
		return BrokerFeatures{ConsumerGroups: true, DedupesPublishes: true, Clustered: true}
	case BrokerRabbitMQCluster:
		return BrokerFeatures{ConsumerGroups: true, Clustered: true, SubscriptionMetadata: map[string]string{"queueType": "quorum"}}
	}
	return BrokerFeatures{}
}

// Broker is a running broker other than Redis.
type Broker struct {
	Kind string
	Addr string // 127.0.0.1:port
	Dir  string // its data folder
	proc *Process

	epmdPort int    // RabbitMQ's epmd, to stop with it
	stop     func() // a broker started elsewhere (NewBroker)
}

// NewBroker is a broker started by someone else (a cluster on test hosts):
// kind, the address its component file's placeholder is replaced with,
// and how to stop it.
func NewBroker(kind, addr string, stop func()) *Broker {
	return &Broker{Kind: kind, Addr: addr, stop: stop}
}

// Process is the broker's process.
func (b *Broker) Process() *Process { return b.proc }

// Stop stops the broker and removes its data folder.
func (b *Broker) Stop() {
	if b.stop != nil {
		b.stop()
		return
	}
	b.proc.Stop(StopGrace)
	if b.epmdPort != 0 {
		cmd := exec.Command("epmd", "-kill")
		cmd.Env = append(os.Environ(), "ERL_EPMD_PORT="+strconv.Itoa(b.epmdPort))
		_ = cmd.Run() // best effort: epmd is a daemon, not our child
	}
	os.RemoveAll(b.Dir)
}

// StartBroker starts the broker named kind on a free port on
// loopback, with its data in a new temporary folder, and waits until it
// accepts connections. For BrokerRedis it returns nil: the Redis broker is
// the one StartRedis starts.
func StartBroker(ctx context.Context, root, kind string, out io.Writer) (*Broker, error) {
	if kind == BrokerRedis || kind == "" {
		return nil, nil
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dapr-pub-sub-"+kind+"-")
	if err != nil {
		return nil, err
	}
	b := &Broker{Kind: kind, Addr: "127.0.0.1:" + strconv.Itoa(ports[0]), Dir: dir}
	var p *Process
	switch kind {
	case BrokerRabbitMQ:
		// The script under /usr/lib, not Debian's /usr/sbin wrapper, which
		// switches to the rabbitmq user in a new session, out of reach of
		// Stop's signals.
		bin, err := lookPath("rabbitmq-server", "apt-get install -y rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server")
		if err != nil {
			return nil, err
		}
		node := "rabbit" + strconv.Itoa(ports[0]) + "@localhost"
		p = &Process{Name: "rabbitmq", Path: bin, Out: out, Dir: dir, Env: []string{
			"RABBITMQ_FEATURE_FLAGS_FILE=" + filepath.Join(dir, "feature_flags"),
			"RABBITMQ_PLUGINS_EXPAND_DIR=" + filepath.Join(dir, "plugins-expand"),
			"RABBITMQ_GENERATED_CONFIG_DIR=" + filepath.Join(dir, "config"),
			"RABBITMQ_SCHEMA_DIR=" + filepath.Join(dir, "schema"),
			"RABBITMQ_PID_FILE=" + filepath.Join(dir, "rabbitmq.pid"),
			"RABBITMQ_QUORUM_DIR=" + filepath.Join(dir, "quorum"),
			"ERL_CRASH_DUMP=" + filepath.Join(dir, "erl_crash.dump"),
			"RABBITMQ_NODENAME=" + node, "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1", "RABBITMQ_NODE_PORT=" + strconv.Itoa(ports[0]),
			"RABBITMQ_DIST_PORT=" + strconv.Itoa(ports[1]), "ERL_EPMD_ADDRESS=127.0.0.1", "ERL_EPMD_PORT=" + strconv.Itoa(ports[2]),
			"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}",
			"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"), "RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
			"RABBITMQ_LOGS=-", "RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
			"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq"), "HOME=" + dir,
		}}
		if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[].\n"), 0o644); err != nil {
			return nil, err
		}
		// epmd, which Erlang starts as a daemon, on a port of its own, on
		// loopback, and stopped with the broker (see Stop).
		b.epmdPort = ports[2]
	case BrokerMQTT:
		bin, err := lookPath("mosquitto", "apt-get install -y mosquitto", "/usr/sbin/mosquitto")
		if err != nil {
			return nil, err
		}
		// max_queued_messages 0: no limit on what mosquitto queues for a
		// subscriber that is behind or away. Its default, 1,000, drops
		// the rest — publishes it has acknowledged ("Outgoing messages are
		// being dropped for client subscriber"): 556–596 of 5,000 orders
		// lost in the sidecar crash with CRASH_ORDERS=5000.
		conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nautosave_interval 1\nmax_queued_messages 0\n", ports[0], dir)
		if err := os.WriteFile(filepath.Join(dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
			return nil, err
		}
		if err := ownDataDir(dir, "mosquitto"); err != nil {
			return nil, err
		}
		p = &Process{Name: "mosquitto", Path: bin, Args: []string{"-c", filepath.Join(dir, "mosquitto.conf")}, Out: out}
	case BrokerKafka:
		bin, err := buildTool(ctx, root, "tools/kafka-fake", "kafka-fake", out)
		if err != nil {
			return nil, err
		}
		p = &Process{Name: "kafka", Path: bin, Out: out, Args: []string{
			"-port", strconv.Itoa(ports[0]), "-data-dir", filepath.Join(dir, "data"), "-partitions", "4",
		}}
	case BrokerJetStream, BrokerRabbitMQCluster:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("%s runs as a cluster on test hosts: start it with system.Start", kind)
	default:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("unknown broker %q: use one of %s", kind, strings.Join(Brokers, ", "))
	}
	b.proc = p
	if err := p.Start(); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*readyTimeout)
	defer cancel()
	if err := WaitTCP(wctx, b.Addr, p); err != nil {
		b.Stop()
		return nil, fmt.Errorf("%s did not become ready: %w", kind, err)
	}
	return b, nil
}

// ownDataDir gives dir to the system user name when we run as root:
// mosquitto started as root drops to its own user (its "user" setting), and
// then could not write its persistence file in a folder of root's ("Error
// saving in-memory database … Permission denied" every autosave, and
// nothing kept over a restart). Not as root, or without that user, it
// keeps the user it was started as.
func ownDataDir(dir, name string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil //nolint:nilerr // no such user: mosquitto has none to drop to
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("give %s to the %s user: %w", dir, name, err)
	}
	return nil
}

// lookPath finds a broker's executable: the first of paths that exists,
// else name on PATH.
func lookPath(name, install string, paths ...string) (string, error) {
	for _, p := range paths {
		if isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s is not installed: %s (.ci/run does this)", name, install)
}

// buildTool builds the Go module in root/dir into the cache (BuildOnce)
// and returns the binary.
func buildTool(ctx context.Context, root, dir, name string, log io.Writer) (string, error) {
	src := filepath.Join(root, dir)
	built, err := BuildOnce(name, src, []string{"go.mod", "go.sum", "main.go"}, "",
		func(built string) bool { return isExecutable(filepath.Join(built, name)) },
		func(built string) error {
			fmt.Fprintf(log, "Building %s from %s (once)\n", name, dir)
			bin := filepath.Join(built, name)
			cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+".tmp", ".")
			cmd.Dir = src
			if out, err := runWithHeartbeat(cmd, log, name+" build"); err != nil {
				return fmt.Errorf("build %s: %w\n%s", name, err, out)
			}
			return os.Rename(bin+".tmp", bin)
		})
	if err != nil {
		return "", err
	}
	return filepath.Join(built, name), nil
}

// BrokerComponent is the pubsub component file for kind, and the address
// in it that StartBroker's real address replaces.
func BrokerComponent(root, kind string) (file, placeholder string) {
	switch kind {
	case BrokerRabbitMQ:
		return filepath.Join(root, "components", "brokers", "rabbitmq.yaml"), "localhost:5672"
	case BrokerRabbitMQCluster: // the whole URL: the cluster has a user of its own
		return filepath.Join(root, "components", "brokers", "rabbitmq.yaml"), "amqp://guest:guest@localhost:5672"
	case BrokerMQTT:
		return filepath.Join(root, "components", "brokers", "mqtt.yaml"), "localhost:1883"
	case BrokerKafka:
		return filepath.Join(root, "components", "brokers", "kafka.yaml"), "localhost:9092"
	case BrokerJetStream:
		return filepath.Join(root, "components", "brokers", "jetstream.yaml"), "nats://localhost:4222"
	}
	return "", ""
}

// UseBroker replaces the pubsub component in the resources folder dst (made
// by CopyComponents) with the one for b, pointed at its address.
func UseBroker(root, dst string, b *Broker) error {
	if b == nil {
		return nil
	}
	file, placeholder := BrokerComponent(root, b.Kind)
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	out := strings.ReplaceAll(string(raw), placeholder, b.Addr)
	return os.WriteFile(filepath.Join(dst, "pubsub.yaml"), []byte(out), 0o644)
}
