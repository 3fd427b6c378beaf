// Package appenv names, once, the environment variables the apps read, and
// renders the settings a launcher gives them across the process boundary.
// The apps' flag parsers and every program that starts them use these names,
// so a variable cannot be spelled two ways.
package appenv

import (
	"strconv"
	"strings"
	"time"
)

// Shared by the apps.
const (
	AppID            = "APP_ID"             // the app's Dapr app id
	DaprAPIToken     = "DAPR_API_TOKEN"     // the token the app sends its sidecar
	DaprGRPCEndpoint = "DAPR_GRPC_ENDPOINT" // the sidecar's gRPC API, host:port
	DaprGRPCPort     = "DAPR_GRPC_PORT"     // the same on 127.0.0.1, when DaprGRPCEndpoint is unset
	LogLevel         = "LOG_LEVEL"          // debug, info, warn, error
	LogFormat        = "LOG_FORMAT"         // text or json
	PubSubName       = "PUBSUB_NAME"
	TopicName        = "TOPIC_NAME"
	// RetentionWindow is W: how long entries and processed-order records
	// are kept (the retention keeper trims to it; the subscriber's records
	// live W plus a margin).
	RetentionWindow = "RETENTION_WINDOW"
	// DeadLetterRetention is how long a kept dead letter lives.
	DeadLetterRetention = "DEAD_LETTER_RETENTION"
	// BacklogURL is the retention keeper's /backlog, which the
	// subscriber's live page shows.
	BacklogURL = "BACKLOG_URL"
	// RecordBatch and RecordFlushers shape the batched record writes.
	RecordBatch    = "RECORD_BATCH"
	RecordFlushers = "RECORD_FLUSHERS"
	// SubscriptionMetadata is more metadata on every subscription the
	// subscriber makes (name=value,…), e.g. queueType=quorum on RabbitMQ.
	SubscriptionMetadata = "SUBSCRIPTION_METADATA"
	// PprofAddress serves Go's profiles there (host:port; for the
	// benchmark's -profile). Off when empty.
	PprofAddress = "PPROF_ADDRESS"
)

// The retention keeper's.
const (
	RedisAddr         = "REDIS_ADDR"
	RedisPassword     = "REDIS_PASSWORD"
	RetentionStreams  = "RETENTION_STREAMS"
	PublishOutbox     = "PUBLISH_OUTBOX"
	RetentionInterval = "RETENTION_INTERVAL"
	MetricsAddress    = "METRICS_ADDRESS"
	// RedisSentinels (comma-separated host:port) and RedisMasterName: the
	// keeper follows the primary through the Sentinels instead of
	// REDIS_ADDR.
	RedisSentinels  = "REDIS_SENTINELS"
	RedisMasterName = "REDIS_MASTER_NAME"
)

// The subscriber's.
const (
	AppAddress          = "APP_ADDRESS"
	AppPort             = "APP_PORT"
	AppAPIToken         = "APP_API_TOKEN" // the token its sidecar sends it
	AppChannel          = "APP_CHANNEL"   // how daprd delivers: see the subscriber's -channel
	AppGRPCPort         = "APP_GRPC_PORT" // the gRPC app port daprd delivers to on the grpc channel
	DeadLetterTopic     = "DEAD_LETTER_TOPIC"
	StateStore          = "STATE_STORE"
	RecordStore         = "RECORD_STORE" // the state store of the processed-order records, when not STATE_STORE
	HandlerTimeout      = "HANDLER_TIMEOUT"
	BulkMaxMessages     = "BULK_MAX_MESSAGES"
	BulkMaxAwait        = "BULK_MAX_AWAIT"
	BulkWorkers         = "BULK_WORKERS"
	StreamWorkers       = "STREAM_WORKERS" // events in hand at once on the stream channel
	FaultFailFirstEvery = "FAULT_FAIL_FIRST_EVERY"
	FaultDelay          = "FAULT_DELAY"
	FaultRejectFrom     = "FAULT_REJECT_FROM"
	FaultAlwaysFail     = "FAULT_ALWAYS_FAIL"
)

// Set renders one variable as NAME=value.
func Set(name string, value any) string {
	switch v := value.(type) {
	case string:
		return name + "=" + v
	case int:
		return name + "=" + strconv.Itoa(v)
	case int64:
		return name + "=" + strconv.FormatInt(v, 10)
	case time.Duration:
		return name + "=" + v.String()
	case bool:
		return name + "=" + strconv.FormatBool(v)
	}
	panic("appenv.Set: unsupported value type")
}

// Subscriber is what a launcher tells the subscriber app. Zero fields are
// left out, so the app's own defaults apply.
type Subscriber struct {
	AppID        string
	Port         int
	Channel      string // grpc, stream or http
	GRPCPort     int    // the gRPC app port on the grpc channel
	SidecarGRPC  string // its sidecar's gRPC API, host:port
	APIToken     string
	AppToken     string
	BulkMessages int           // > 0 turns on bulk subscribe (the throughput mode)
	BulkAwait    time.Duration // the longest a batch waits to fill
	LogLevel     string
	LogFormat    string
	// RetentionWindow is W: its processed-order records live W + W/24 (≥ 1 min).
	RetentionWindow time.Duration
	BacklogURL      string // the retention keeper's /backlog, for the live page
	RecordStore     string // the state store of the processed-order records; "" is the state store
	// SubscriptionMetadata is more metadata on every subscription
	// (name=value,…).
	SubscriptionMetadata string
	Extra                []string // more NAME=value pairs, e.g. fault settings; last wins
}

// Env renders s as NAME=value pairs.
func (s Subscriber) Env() []string {
	var env []string
	add := func(name string, v any, set bool) {
		if set {
			env = append(env, Set(name, v))
		}
	}
	add(AppID, s.AppID, s.AppID != "")
	add(AppPort, s.Port, s.Port != 0)
	add(AppChannel, s.Channel, s.Channel != "")
	add(AppGRPCPort, s.GRPCPort, s.GRPCPort != 0)
	add(DaprGRPCEndpoint, s.SidecarGRPC, s.SidecarGRPC != "")
	add(DaprAPIToken, s.APIToken, s.APIToken != "")
	add(AppAPIToken, s.AppToken, s.AppToken != "")
	add(BulkMaxMessages, s.BulkMessages, s.BulkMessages != 0)
	add(BulkMaxAwait, s.BulkAwait, s.BulkAwait != 0)
	add(LogLevel, s.LogLevel, s.LogLevel != "")
	add(LogFormat, s.LogFormat, s.LogFormat != "")
	add(RetentionWindow, s.RetentionWindow, s.RetentionWindow != 0)
	add(RecordStore, s.RecordStore, s.RecordStore != "")
	add(BacklogURL, s.BacklogURL, s.BacklogURL != "")
	add(SubscriptionMetadata, s.SubscriptionMetadata, s.SubscriptionMetadata != "")
	return append(env, s.Extra...)
}

// Publisher is what a launcher tells the publisher app; its flags (count,
// rate, …) go on the command line.
type Publisher struct {
	SidecarGRPC string
	APIToken    string
	LogFormat   string
	Outbox      bool // store each order; Dapr's outbox publishes it
	Extra       []string
}

// Env renders p as NAME=value pairs.
func (p Publisher) Env() []string {
	env := []string{Set(DaprGRPCEndpoint, p.SidecarGRPC), Set(DaprAPIToken, p.APIToken)}
	if p.LogFormat != "" {
		env = append(env, Set(LogFormat, p.LogFormat))
	}
	if p.Outbox {
		env = append(env, Set(PublishOutbox, true))
	}
	return append(env, p.Extra...)
}

// Keeper is what a launcher tells the retention keeper. Zero durations are
// left out, so the keeper's own defaults apply.
type Keeper struct {
	RedisAddr, RedisPassword string
	Window, Interval         time.Duration
	MetricsAddress           string // host:port of /metrics and /healthz
	// Sentinels and SentinelMaster: Redis with failover ("" for none).
	Sentinels, SentinelMaster string
	// Streams it keeps; nil for its default (the topics).
	Streams []string
}

// Env renders k as NAME=value pairs.
func (k Keeper) Env() []string {
	env := []string{Set(RedisAddr, k.RedisAddr), Set(RedisPassword, k.RedisPassword), Set(MetricsAddress, k.MetricsAddress)}
	if k.Window != 0 {
		env = append(env, Set(RetentionWindow, k.Window))
	}
	if k.Interval != 0 {
		env = append(env, Set(RetentionInterval, k.Interval))
	}
	if k.Sentinels != "" {
		env = append(env, Set(RedisSentinels, k.Sentinels), Set(RedisMasterName, k.SentinelMaster))
	}
	if len(k.Streams) > 0 {
		env = append(env, Set(RetentionStreams, strings.Join(k.Streams, ",")))
	}
	return env
}
