package subscriber

import (
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"dapr-pub-sub/internal/appenv"
	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/sidecar"
	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/httpch"
)

// Delivery channels: how the subscriber's daprd hands it each event.
const (
	// ChannelGRPC is Dapr's gRPC app channel (daprd --app-protocol grpc):
	// daprd calls OnTopicEvent on the app's gRPC server (grpcch). Every
	// transport error is retried by daprd (postman/grpc), so an order the
	// app never saw is never acknowledged. The default.
	ChannelGRPC = "grpc"
	// ChannelStream is Dapr's streaming subscription (streamch): the app
	// opens one stream per topic to its daprd, which sends each event on
	// it and waits for the app's answer. No app port: a dead app is a
	// closed stream, and daprd redelivers what was on it. daprd 1.18 or
	// later (streamch.CheckStreamRuntime); the latency mode only (no bulk
	// delivery on streams).
	ChannelStream = "stream"
	// ChannelHTTP is the original example's shape: daprd POSTs each event to the app's
	// route. Its shared middleware pipeline can report a failed delivery as
	// an empty 200, which daprd acknowledges (see the README's known issue).
	ChannelHTTP = "http"
)

// Channels lists the channels, the default first.
var Channels = []string{ChannelGRPC, ChannelStream, ChannelHTTP}

// Config is the subscriber's settings, declared once: every field has an
// environment variable (and all but the secrets a flag, the flag winning),
// ParseConfig reads and checks them, and Env renders them back for a child
// process. A program that starts the subscriber builds a Config from
// DefaultConfig and passes Env; it never spells a variable.
type Config struct {
	Address         string        // listen host; APP_ADDRESS, default 127.0.0.1 (Dapr calls the app on loopback)
	Port            int           // HTTP listen port (probes, metrics, the live page; daprd's --app-port on the http channel); APP_PORT, default 8001
	Channel         string        // how daprd delivers: grpc (default), stream or http; APP_CHANNEL
	StreamWorkers   int           // events in hand at once on the stream channel; STREAM_WORKERS, default 32
	GRPCPort        int           // the gRPC app port daprd delivers to on the grpc channel (its --app-port); APP_GRPC_PORT, default 8002
	AppID           string        // Dapr app id, the namespace of its records; APP_ID, default "subscriber"
	PubSub          string        // Dapr pub/sub component; PUBSUB_NAME, default "pubsub"
	Topic           string        // topic; TOPIC_NAME, default "orders"
	DeadLetterTopic string        // where dropped orders go; DEAD_LETTER_TOPIC, default "<topic>-deadletter"
	StateStore      string        // Dapr state store for processed orders and dead letters; STATE_STORE, default "statestore"
	RecordStore     string        // Dapr state store for the processed-order records when not StateStore; RECORD_STORE, e.g. "records" (components/records/)
	DaprAddress     string        // the sidecar's gRPC API, for the state store; DAPR_GRPC_ENDPOINT / DAPR_GRPC_PORT
	Timeout         time.Duration // per event; HANDLER_TIMEOUT, default 4s, under the 5 s shutdown bound
	// RetentionWindow is W (RETENTION_WINDOW, default 24h): a processed
	// order's record lives W plus store.RecordMargin(W); 0 keeps it for good.
	RetentionWindow time.Duration
	// DeadLetterRetention is how long a kept dead letter lives
	// (DEAD_LETTER_RETENTION, default 720h = 30 days; 0 for good).
	DeadLetterRetention time.Duration
	// RecordBatch bounds the processed-order records written in one
	// state call (RECORD_BATCH, default 100; 1 writes each alone), and
	// RecordFlushers the calls in flight (RECORD_FLUSHERS, default 4):
	// records of orders handled at once are written together (see
	// store.WithBatching). Needs a state store whose bulk save honours
	// first-write per item, as Redis and in-memory do.
	RecordBatch, RecordFlushers int
	// Ordered applies each order's events in sequence (ORDERED, default
	// false): an event whose predecessor has not been applied is held in
	// the state store until it is, or until GapTimeout (GAP_TIMEOUT,
	// default 5m) has passed, then kept as a dead letter; one more than
	// HoldLimit (HOLD_LIMIT, default 100) ahead is a dead letter at once.
	Ordered    bool
	GapTimeout time.Duration
	HoldLimit  int64
	// BacklogURL is the retention keeper's GET /backlog (BACKLOG_URL); the
	// live page shows it. Empty: the page says the backlog is not known.
	BacklogURL string
	// SubscriptionMetadata is added to every subscription's metadata
	// (SUBSCRIPTION_METADATA, name=value,…): what a broker's component
	// reads per subscription, e.g. queueType=quorum for RabbitMQ's quorum
	// queues. Empty: none.
	SubscriptionMetadata map[string]string
	LogLevel             string         // LOG_LEVEL: debug, info, warn, error
	LogFormat            string         // LOG_FORMAT: text, json, or "" for text on a terminal and JSON otherwise
	AppToken             string         // APP_API_TOKEN: the token daprd sends; required on every route but /healthz when set
	DaprAPIToken         string         // DAPR_API_TOKEN: the token the app sends its daprd; a secret, no flag
	PprofAddress         string         // PPROF_ADDRESS: serves Go's profiles there (host:port); "" is off; no flag
	Faults               handler.Faults // FAULT_*: for fault tests and demos only
	// Bulk is the high-throughput mode: BULK_MAX_MESSAGES (default 0, off),
	// BULK_MAX_AWAIT (default 10ms), BULK_WORKERS (default 32).
	Bulk httpch.Bulk
}

// ListenAddr is the host:port the HTTP service listens on.
func (c Config) ListenAddr() string {
	return net.JoinHostPort(c.Address, strconv.Itoa(c.Port))
}

// GRPCListenAddr is the host:port the gRPC app service listens on, on the
// grpc channel.
func (c Config) GRPCListenAddr() string {
	return net.JoinHostPort(c.Address, strconv.Itoa(c.GRPCPort))
}

// Topics are what the app subscribes to.
func (c Config) Topics() handler.Topics {
	return handler.Topics{PubSub: c.PubSub, Topic: c.Topic, DeadLetterTopic: c.DeadLetterTopic, Metadata: c.SubscriptionMetadata,
		RouteByType: c.Ordered && (c.Channel == ChannelGRPC || c.Channel == ChannelHTTP && c.Bulk.MaxMessages == 0)}
}

// grpcAddr is GRPCListenAddr on the grpc channel, else "" (for logs).
func grpcAddr(c Config) string {
	if c.Channel != ChannelGRPC {
		return ""
	}
	return c.GRPCListenAddr()
}

// DefaultConfig is the subscriber's settings when nothing is set: what
// ParseConfig gives for no flags and an empty environment.
func DefaultConfig() Config { return cli.Defaults(ParseConfig) }

// Env renders c as the environment of a subscriber process: every
// setting, so that ParseConfig(nil, that environment) gives c back.
func (c Config) Env() []string {
	var v appenv.Vars
	v.Set(appenv.AppAddress, c.Address)
	v.Set(appenv.AppPort, c.Port)
	v.Set(appenv.AppChannel, c.Channel)
	v.Set(appenv.StreamWorkers, c.StreamWorkers)
	v.Set(appenv.AppGRPCPort, c.GRPCPort)
	v.Set(appenv.AppID, c.AppID)
	v.Set(appenv.PubSubName, c.PubSub)
	v.Set(appenv.TopicName, c.Topic)
	v.Set(appenv.DeadLetterTopic, c.DeadLetterTopic)
	v.Set(appenv.StateStore, c.StateStore)
	v.Set(appenv.RecordStore, c.RecordStore)
	v.Set(appenv.DaprGRPCEndpoint, c.DaprAddress)
	v.Set(appenv.HandlerTimeout, c.Timeout)
	v.Set(appenv.RetentionWindow, c.RetentionWindow)
	v.Set(appenv.DeadLetterRetention, c.DeadLetterRetention)
	v.Set(appenv.RecordBatch, c.RecordBatch)
	v.Set(appenv.RecordFlushers, c.RecordFlushers)
	v.Set(appenv.Ordered, c.Ordered)
	v.Set(appenv.GapTimeout, c.GapTimeout)
	v.Set(appenv.HoldLimit, c.HoldLimit)
	v.Set(appenv.BacklogURL, c.BacklogURL)
	v.Set(appenv.SubscriptionMetadata, formatPairs(c.SubscriptionMetadata))
	v.Set(appenv.LogLevel, c.LogLevel)
	v.Set(appenv.LogFormat, c.LogFormat)
	v.Set(appenv.AppAPIToken, c.AppToken)
	v.Set(appenv.DaprAPIToken, c.DaprAPIToken)
	v.Set(appenv.PprofAddress, c.PprofAddress)
	v.Set(appenv.FaultFailFirstEvery, c.Faults.FailFirstEvery)
	v.Set(appenv.FaultDelay, c.Faults.Delay)
	v.Set(appenv.FaultRejectFrom, c.Faults.RejectFrom)
	v.Set(appenv.FaultAlwaysFail, c.Faults.AlwaysFail)
	v.Set(appenv.FaultNoRecord, c.Faults.NoRecord)
	v.Set(appenv.FaultNoLine, c.Faults.NoLine)
	v.Set(appenv.BulkMaxMessages, c.Bulk.MaxMessages)
	v.Set(appenv.BulkMaxAwait, c.Bulk.MaxAwait)
	v.Set(appenv.BulkWorkers, c.Bulk.Workers)
	return v
}

// ParseConfig reads args (without the program name) with defaults from
// getenv; usage and errors go to stderr, and -h gives flag.ErrHelp.
func ParseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	env := &cli.Env{Getenv: getenv}
	var c Config
	fs := cli.NewFlagSet("subscriber", "Serves the routes its Dapr sidecar calls with each order event, records each\norder once in the state store, and prints \"Received message: {...}\" for it.", stderr)
	fs.StringVar(&c.Address, "address", env.Str(appenv.AppAddress, "127.0.0.1"), "host to listen on; 0.0.0.0 for all interfaces [APP_ADDRESS]")
	fs.IntVar(&c.Port, "port", env.Int(appenv.AppPort, 8001), "port to listen on, the sidecar's --app-port [APP_PORT]")
	fs.StringVar(&c.Channel, "channel", env.Str(appenv.AppChannel, ""), "how daprd delivers: grpc (its gRPC app channel, the default: never acknowledges an order the app did not answer), stream (a streaming subscription the app opens to its daprd; no app port; latency mode only) or http (the original example's POST to a route; see the README's known issue; the default in the throughput mode, which needs it) [APP_CHANNEL]")
	fs.IntVar(&c.StreamWorkers, "stream-workers", env.Int(appenv.StreamWorkers, 32), "stream channel: events in hand at once, over all streams; daprd sends at most the component's concurrency per topic [STREAM_WORKERS]")
	fs.IntVar(&c.GRPCPort, "grpc-port", env.Int(appenv.AppGRPCPort, 8002), "gRPC port daprd delivers to on the grpc channel, the sidecar's --app-port there [APP_GRPC_PORT]")
	fs.StringVar(&c.AppID, "app-id", env.Str(appenv.AppID, "subscriber"), "the app's Dapr app id; its records are kept under it [APP_ID]")
	fs.StringVar(&c.PubSub, "pubsub", env.Str(appenv.PubSubName, "pubsub"), "Dapr pub/sub component name [PUBSUB_NAME]")
	fs.StringVar(&c.Topic, "topic", env.Str(appenv.TopicName, "orders"), "topic to subscribe to [TOPIC_NAME]")
	fs.StringVar(&c.DeadLetterTopic, "dead-letter-topic", env.Str(appenv.DeadLetterTopic, ""), "topic that dropped orders go to (default <topic>-deadletter) [DEAD_LETTER_TOPIC]")
	fs.StringVar(&c.StateStore, "state-store", env.Str(appenv.StateStore, "statestore"), "Dapr state store component for processed orders and dead letters [STATE_STORE]")
	fs.StringVar(&c.RecordStore, "record-store", env.Str(appenv.RecordStore, ""), "Dapr state store component for the processed-order records only (default: -state-store); \"records\" is the record store of components/records/, which writes a batch of records in one Redis step. It must see the same keys (keyPrefix) [RECORD_STORE]")
	fs.StringVar(&c.DaprAddress, "dapr-address", sidecar.Address(getenv), "the sidecar's gRPC address [DAPR_GRPC_ENDPOINT, or DAPR_GRPC_PORT on 127.0.0.1]")
	fs.DurationVar(&c.Timeout, "timeout", env.Duration(appenv.HandlerTimeout, 4*time.Second), "time one event may take; keep it below the component's processingTimeout [HANDLER_TIMEOUT]")
	fs.DurationVar(&c.RetentionWindow, "retention-window", env.Duration(appenv.RetentionWindow, 24*time.Hour), "W: a processed order's record lives this plus W/24 (at least 1m), so it outlives every redelivery of the order; keep it equal to the retention keeper's; 0 keeps records for good [RETENTION_WINDOW]")
	fs.DurationVar(&c.DeadLetterRetention, "dead-letter-retention", env.Duration(appenv.DeadLetterRetention, 30*24*time.Hour), "how long a kept dead letter lives; 0 for good [DEAD_LETTER_RETENTION]")
	fs.IntVar(&c.RecordBatch, "record-batch", env.Int(appenv.RecordBatch, 100), "most processed-order records written in one state call; records of orders handled at once go together, a lone one at once; 1 writes each alone. The state store's bulk save must honour first-write per item (Redis, in-memory do) [RECORD_BATCH]")
	fs.IntVar(&c.RecordFlushers, "record-flushers", env.Int(appenv.RecordFlushers, 4), "record writes in flight at once; more waits less, fewer batches more [RECORD_FLUSHERS]")
	fs.BoolVar(&c.Ordered, "ordered", env.Bool(appenv.Ordered, false), "apply each order's events in sequence (seq 1, 2, …), exactly once, at full concurrency across orders: an event that arrives before its predecessor is held in the state store until the predecessor is applied [ORDERED]")
	fs.DurationVar(&c.GapTimeout, "gap-timeout", env.Duration(appenv.GapTimeout, 5*time.Minute), "-ordered: how long a held event waits for its predecessor before it is kept as a dead letter (replay it once the predecessor arrived) [GAP_TIMEOUT]")
	fs.Int64Var(&c.HoldLimit, "hold-limit", env.Int64(appenv.HoldLimit, 100), "-ordered: how far ahead of the event its order waits for an event may be and still be held; further is a dead letter [HOLD_LIMIT]")
	fs.StringVar(&c.BacklogURL, "backlog-url", env.Str(appenv.BacklogURL, ""), "the retention keeper's /backlog (http://host:port/backlog): the live page shows its lag and pending next to the counts [BACKLOG_URL]")
	var subMeta string
	fs.StringVar(&subMeta, "subscription-metadata", env.Str(appenv.SubscriptionMetadata, ""), "more metadata on every subscription, name=value,… — e.g. queueType=quorum for RabbitMQ quorum queues (a cluster) [SUBSCRIPTION_METADATA]")
	fs.StringVar(&c.LogLevel, "log-level", env.Str(appenv.LogLevel, "info"), "debug, info, warn or error [LOG_LEVEL]")
	fs.Int64Var(&c.Faults.FailFirstEvery, "fault-fail-first-every", env.Int64(appenv.FaultFailFirstEvery, 0), "fault test: fail the first delivery of every Nth order [FAULT_FAIL_FIRST_EVERY]")
	fs.DurationVar(&c.Faults.Delay, "fault-delay", env.Duration(appenv.FaultDelay, 0), "fault test: add this to the processing of each order [FAULT_DELAY]")
	fs.Int64Var(&c.Faults.RejectFrom, "fault-reject-from", env.Int64(appenv.FaultRejectFrom, 0), "fault test: drop every order with an id ≥ this as if it were invalid [FAULT_REJECT_FROM]")
	fs.BoolVar(&c.Faults.NoRecord, "fault-no-record", env.Bool(appenv.FaultNoRecord, false), "benchmark calibration only: process orders without their record — no exactly-once [FAULT_NO_RECORD]")
	fs.BoolVar(&c.Faults.NoLine, "fault-no-line", env.Bool(appenv.FaultNoLine, false), "benchmark pricing only: apply orders without printing their Received message line [FAULT_NO_LINE]")
	fs.Int64Var(&c.Faults.AlwaysFail, "fault-always-fail", env.Int64(appenv.FaultAlwaysFail, 0), "fault test: fail every delivery of the order with this id, so its retries run out [FAULT_ALWAYS_FAIL]")
	fs.IntVar(&c.Bulk.MaxMessages, "bulk-max-messages", env.Int(appenv.BulkMaxMessages, 0), "high-throughput mode: take orders from daprd in batches of up to this many (bulk subscribe); 0 is off [BULK_MAX_MESSAGES]")
	fs.DurationVar(&c.Bulk.MaxAwait, "bulk-max-await", env.Duration(appenv.BulkMaxAwait, 10*time.Millisecond), "high-throughput mode: longest a batch waits to fill, added to latency at low rates [BULK_MAX_AWAIT]")
	fs.IntVar(&c.Bulk.Workers, "bulk-workers", env.Int(appenv.BulkWorkers, 32), "high-throughput mode: orders of one batch processed at once [BULK_WORKERS]")
	if err := cli.Parse(fs, args); err != nil {
		return Config{}, err
	}
	if env.Err != nil {
		return Config{}, env.Err
	}
	var err error
	if c.SubscriptionMetadata, err = parsePairs(subMeta); err != nil {
		return Config{}, fmt.Errorf("-subscription-metadata: %w", err)
	}
	c.AppToken = getenv(appenv.AppAPIToken) // a secret: no flag, so it is not in ps
	c.DaprAPIToken = getenv(appenv.DaprAPIToken)
	c.LogFormat = getenv(appenv.LogFormat)
	c.PprofAddress = getenv(appenv.PprofAddress)
	if c.Channel == "" {
		c.Channel = ChannelGRPC
		if c.Bulk.MaxMessages > 0 {
			c.Channel = ChannelHTTP
		}
	}
	if c.DeadLetterTopic == "" {
		c.DeadLetterTopic = c.Topic + "-deadletter"
	}
	switch {
	case c.Port < 1 || c.Port > 65535:
		return Config{}, fmt.Errorf("-port must be 1–65535, got %d", c.Port)
	case c.Channel != ChannelGRPC && c.Channel != ChannelStream && c.Channel != ChannelHTTP:
		return Config{}, fmt.Errorf("-channel must be grpc, stream or http, got %q", c.Channel)
	case c.Channel == ChannelGRPC && (c.GRPCPort < 1 || c.GRPCPort > 65535 || c.GRPCPort == c.Port):
		return Config{}, fmt.Errorf("-grpc-port must be 1–65535 and differ from -port, got %d", c.GRPCPort)
	case c.Channel == ChannelGRPC && c.Bulk.MaxMessages > 0:
		// go-sdk v1.15 service/grpc answers OnBulkTopicEventAlpha1 with
		// Unimplemented, which daprd treats as "drop", and its
		// subscription list cannot ask for bulk delivery.
		return Config{}, fmt.Errorf("the throughput mode (-bulk-max-messages) needs -channel http: the Go SDK's gRPC service does not implement bulk delivery")
	case c.Channel == ChannelStream && c.Bulk.MaxMessages > 0:
		// daprd 1.16–1.18 pkg/runtime/subscription/postman/streaming
		// DeliverBulk returns "not implemented".
		return Config{}, fmt.Errorf("the throughput mode (-bulk-max-messages) needs -channel http: daprd has no bulk delivery on subscription streams")
	case c.Channel == ChannelStream && c.StreamWorkers < 1:
		return Config{}, fmt.Errorf("-stream-workers must be ≥ 1, got %d", c.StreamWorkers)
	case c.PubSub == "" || c.Topic == "" || c.StateStore == "" || c.AppID == "":
		return Config{}, fmt.Errorf("-pubsub, -topic, -state-store and -app-id must not be empty")
	case c.DeadLetterTopic == c.Topic:
		return Config{}, fmt.Errorf("-dead-letter-topic must differ from -topic, or a dropped order would loop")
	case c.RetentionWindow < 0 || c.DeadLetterRetention < 0:
		return Config{}, fmt.Errorf("-retention-window and -dead-letter-retention must be ≥ 0")
	case c.RecordBatch < 1 || c.RecordFlushers < 1:
		return Config{}, fmt.Errorf("-record-batch and -record-flushers must be ≥ 1, got %d and %d", c.RecordBatch, c.RecordFlushers)
	case c.GapTimeout < time.Second || c.HoldLimit < 1:
		return Config{}, fmt.Errorf("-gap-timeout must be ≥ 1s and -hold-limit ≥ 1, got %s and %d", c.GapTimeout, c.HoldLimit)
	case c.BacklogURL != "" && !isHTTPURL(c.BacklogURL):
		return Config{}, fmt.Errorf("-backlog-url must be an http:// or https:// URL, got %q", c.BacklogURL)
	case c.Timeout <= 0:
		return Config{}, fmt.Errorf("-timeout must be > 0, got %s", c.Timeout)
	case c.Bulk.MaxMessages < 0 || c.Bulk.MaxMessages > 10000:
		return Config{}, fmt.Errorf("-bulk-max-messages must be 0 (off) to 10000, got %d", c.Bulk.MaxMessages)
	case c.Bulk.MaxMessages > 0 && (c.Bulk.MaxAwait < time.Millisecond || c.Bulk.MaxAwait%time.Millisecond != 0):
		return Config{}, fmt.Errorf("-bulk-max-await must be a whole number of milliseconds ≥ 1ms, got %s", c.Bulk.MaxAwait)
	case c.Bulk.Workers < 1:
		return Config{}, fmt.Errorf("-bulk-workers must be ≥ 1, got %d", c.Bulk.Workers)
	case c.Faults.FailFirstEvery < 0 || c.Faults.Delay < 0 || c.Faults.RejectFrom < 0 || c.Faults.AlwaysFail < 0:
		return Config{}, fmt.Errorf("fault settings must be ≥ 0")
	}
	return c, nil
}

// isHTTPURL reports whether s is an absolute http(s) URL with a host.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// formatPairs renders m as parsePairs reads it, sorted by name.
func formatPairs(m map[string]string) string {
	pairs := make([]string, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		pairs = append(pairs, name+"="+m[name])
	}
	return strings.Join(pairs, ",")
}

// parsePairs reads name=value,… (empty: nil); names must be unique and
// not empty.
func parsePairs(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string]string{}
	for pair := range strings.SplitSeq(s, ",") {
		name, value, ok := strings.Cut(pair, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return nil, fmt.Errorf("%q is not name=value", pair)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%s given twice", name)
		}
		out[name] = strings.TrimSpace(value)
	}
	return out, nil
}
