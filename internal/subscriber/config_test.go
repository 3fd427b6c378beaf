package subscriber

import (
	"io"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	tests := map[string]struct {
		env     map[string]string
		args    []string
		want    Config
		wantErr string
	}{
		"defaults": {want: Config{Address: "127.0.0.1", Port: 8001, PubSub: "pubsub", Topic: "orders", DeadLetterTopic: "orders-deadletter", LogLevel: "info"}},
		"env": {env: map[string]string{"APP_PORT": "9000", "TOPIC_NAME": "t"},
			want: Config{Address: "127.0.0.1", Port: 9000, PubSub: "pubsub", Topic: "t", DeadLetterTopic: "t-deadletter", LogLevel: "info"}},
		"flag over env": {env: map[string]string{"APP_PORT": "9000"}, args: []string{"-port", "9001"},
			want: Config{Address: "127.0.0.1", Port: 9001, PubSub: "pubsub", Topic: "orders", DeadLetterTopic: "orders-deadletter", LogLevel: "info"}},
		"bad APP_PORT":     {env: map[string]string{"APP_PORT": "http"}, wantErr: "APP_PORT"},
		"port range":       {args: []string{"-port", "70000"}, wantErr: "-port must be"},
		"dead letter loop": {args: []string{"-dead-letter-topic", "orders"}, wantErr: "must differ"},
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
			if err != nil || c != tc.want {
				t.Fatalf("ParseConfig = %+v, %v; want %+v", c, err, tc.want)
			}
		})
	}
}
