package subscriber

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/httpch"
	"dapr-pub-sub/internal/testutil"
)

func TestParseConfig(t *testing.T) {
	defaults := Config{Address: "127.0.0.1", Port: 8001, Channel: ChannelGRPC, StreamWorkers: 32, GRPCPort: 8002, AppID: "subscriber", PubSub: "pubsub", Topic: "orders",
		DeadLetterTopic: "orders-deadletter", StateStore: "statestore", DaprAddress: "127.0.0.1:50001",
		Timeout: 4 * time.Second, RetentionWindow: 24 * time.Hour, DeadLetterRetention: 30 * 24 * time.Hour, RecordBatch: 100, RecordFlushers: 4, GapTimeout: 5 * time.Minute, HoldLimit: 100, LogLevel: "info", Bulk: httpch.Bulk{MaxAwait: 10 * time.Millisecond, Workers: 32}}
	with := func(change func(*Config)) Config {
		c := defaults
		change(&c)
		return c
	}
	tests := map[string]struct {
		env     map[string]string
		args    []string
		want    Config
		wantErr string
	}{
		"defaults": {want: defaults},
		"env": {env: map[string]string{"APP_PORT": "9000", "TOPIC_NAME": "t", "DAPR_GRPC_PORT": "50002", "APP_ID": "audit", "FAULT_DELAY": "5ms"},
			want: with(func(c *Config) {
				c.Port, c.Topic, c.DeadLetterTopic, c.DaprAddress, c.AppID, c.Faults.Delay = 9000, "t", "t-deadletter", "127.0.0.1:50002", "audit", 5*time.Millisecond
			})},
		"flag over env":     {env: map[string]string{"APP_PORT": "9000"}, args: []string{"-port", "9001"}, want: with(func(c *Config) { c.Port = 9001 })},
		"bad APP_PORT":      {env: map[string]string{"APP_PORT": "http"}, wantErr: "APP_PORT"},
		"bad timeout":       {env: map[string]string{"HANDLER_TIMEOUT": "soon"}, wantErr: "HANDLER_TIMEOUT"},
		"port range":        {args: []string{"-port", "70000"}, wantErr: "-port must be"},
		"dead letter loop":  {args: []string{"-dead-letter-topic", "orders"}, wantErr: "must differ"},
		"zero timeout":      {args: []string{"-timeout", "0"}, wantErr: "-timeout must be"},
		"backlog not a URL": {args: []string{"-backlog-url", "retention:9091/backlog"}, wantErr: "-backlog-url must be"},
		"no record batch":   {args: []string{"-record-batch", "0"}, wantErr: "-record-batch and -record-flushers must be"},
		"subscription metadata": {env: map[string]string{"SUBSCRIPTION_METADATA": "queueType=quorum, maxLen = 10"},
			want: with(func(c *Config) { c.SubscriptionMetadata = map[string]string{"queueType": "quorum", "maxLen": "10"} })},
		"subscription metadata not pairs": {args: []string{"-subscription-metadata", "queueType"}, wantErr: `"queueType" is not name=value`},
		"subscription metadata twice":     {args: []string{"-subscription-metadata", "a=1,a=2"}, wantErr: "a given twice"},
		"bulk mode": {env: map[string]string{"BULK_MAX_MESSAGES": "200", "BULK_MAX_AWAIT": "5ms"},
			want: with(func(c *Config) { c.Bulk.MaxMessages, c.Bulk.MaxAwait, c.Channel = 200, 5*time.Millisecond, ChannelHTTP })},
		"http channel":      {env: map[string]string{"APP_CHANNEL": "http"}, want: with(func(c *Config) { c.Channel = ChannelHTTP })},
		"stream channel":    {env: map[string]string{"APP_CHANNEL": "stream", "STREAM_WORKERS": "4"}, want: with(func(c *Config) { c.Channel, c.StreamWorkers = ChannelStream, 4 })},
		"bad channel":       {args: []string{"-channel", "smoke"}, wantErr: "-channel must be grpc, stream or http"},
		"bulk on stream":    {args: []string{"-channel", "stream", "-bulk-max-messages", "10"}, wantErr: "no bulk delivery on subscription streams"},
		"no stream workers": {args: []string{"-channel", "stream", "-stream-workers", "0"}, wantErr: "-stream-workers must be"},
		"bulk on grpc":      {args: []string{"-channel", "grpc", "-bulk-max-messages", "10"}, wantErr: "needs -channel http"},
		"grpc port":         {args: []string{"-grpc-port", "8001"}, wantErr: "differ from -port"},
		"bulk await in µs":  {args: []string{"-bulk-max-messages", "10", "-bulk-max-await", "1500us"}, wantErr: "whole number of milliseconds"},
		"bulk count range":  {args: []string{"-bulk-max-messages", "-1"}, wantErr: "-bulk-max-messages must be"},
		"bulk zero workers": {args: []string{"-bulk-workers", "0"}, wantErr: "-bulk-workers must be"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := ParseConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(c, tc.want) {
				t.Fatalf("ParseConfig = %+v, %v; want %+v", c, err, tc.want)
			}
		})
	}
}

// TestConfigEnvRoundTrip: Env renders every setting, so a child process
// started with it reads the same Config back — the defaults, and a Config
// whose every field differs from them (but the retention window, whose 0
// "keep for good" is tried here).
func TestConfigEnvRoundTrip(t *testing.T) {
	all := Config{Address: "0.0.0.0", Port: 9001, Channel: ChannelHTTP, StreamWorkers: 3, GRPCPort: 9002, AppID: "audit", PubSub: "ps", Topic: "t",
		DeadLetterTopic: "dl", StateStore: "st", RecordStore: "records", DaprAddress: "10.0.0.1:50009", Timeout: time.Second,
		RetentionWindow: 0, DeadLetterRetention: time.Hour, RecordBatch: 7, RecordFlushers: 2, BacklogURL: "http://k:9091/backlog",
		Ordered: true, GapTimeout: time.Minute, HoldLimit: 8,
		SubscriptionMetadata: map[string]string{"queueType": "quorum", "a": "b"}, LogLevel: "debug", LogFormat: "json",
		AppToken: "app-secret", DaprAPIToken: "dapr-secret", PprofAddress: "127.0.0.1:6060",
		Faults: handler.Faults{FailFirstEvery: 10, Delay: 5 * time.Millisecond, RejectFrom: 100, AlwaysFail: 21, NoRecord: true, NoLine: true},
		Bulk:   httpch.Bulk{MaxMessages: 200, MaxAwait: 5 * time.Millisecond, Workers: 8}}
	testutil.EnvRoundTrip(t, DefaultConfig(), all, Config.Env, ParseConfig, "RetentionWindow")
}
