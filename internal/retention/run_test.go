package retention

import (
	"testing"
	"time"

	"dapr-pub-sub/internal/testutil"
)

// TestConfigEnvRoundTrip: Env renders every setting of the program (but
// -consumer-idle, a flag alone), so a keeper started with it reads the
// same Config back.
func TestConfigEnvRoundTrip(t *testing.T) {
	all := Config{Streams: []string{"orders", "audit"}, Window: time.Hour, Interval: time.Second, RedisAddr: "10.0.0.1:6380", RedisPassword: "secret",
		Sentinels: []string{"10.0.0.2:26379", "10.0.0.3:26379"}, MasterName: "orders", MetricsAddress: "127.0.0.1:9999", LogLevel: "debug", LogFormat: "json"}
	testutil.EnvRoundTrip(t, DefaultConfig(), all, Config.Env, ParseConfig, "ConsumerIdle")
}
