// Package appenv names, once, the environment variables the apps share,
// and renders NAME=value pairs (Vars). Each app's Config reads its
// variables and renders itself back (its Env method), so a program that
// starts an app never spells one.
package appenv

import (
	"strconv"
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
	Ordered             = "ORDERED"        // the ordered mode: each order's events applied in sequence
	GapTimeout          = "GAP_TIMEOUT"    // the ordered mode: how long a held event waits for its predecessor
	HoldLimit           = "HOLD_LIMIT"     // the ordered mode: how far ahead an event may be held
	FaultFailFirstEvery = "FAULT_FAIL_FIRST_EVERY"
	FaultDelay          = "FAULT_DELAY"
	FaultRejectFrom     = "FAULT_REJECT_FROM"
	FaultAlwaysFail     = "FAULT_ALWAYS_FAIL"
	FaultNoRecord       = "FAULT_NO_RECORD"
	FaultNoLine         = "FAULT_NO_LINE"
)

// Vars is a process environment being rendered, NAME=value pairs: an
// app's Config renders itself into one (its Env method).
type Vars []string

// Set adds one variable; value is rendered as Set renders it.
func (v *Vars) Set(name string, value any) { *v = append(*v, Set(name, value)) }

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
	case float64:
		return name + "=" + strconv.FormatFloat(v, 'g', -1, 64)
	}
	panic("appenv.Set: unsupported value type")
}
