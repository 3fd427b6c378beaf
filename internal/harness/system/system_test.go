package system

import (
	"fmt"
	"strings"
	"testing"

	"dapr-pub-sub/internal/harness/proc"
)

// TestStartRefusesWhatCannotRun: a system that cannot run is refused
// before any process starts, with the reason.
func TestStartRefusesWhatCannotRun(t *testing.T) {
	tools := Tools{Root: t.TempDir(), Daprd: proc.Daprd{Path: "/nonexistent/daprd"}, BinDir: t.TempDir()}
	whole := []Part{Redis{}, PubSub{}, Keeper{}, Node{}, PublisherSidecar{}}
	tests := map[string]struct {
		env   Env
		parts []Part
		want  string
	}{
		"no tools":        {env: Env{}, parts: whole, want: "not prepared"},
		"unknown channel": {env: Env{Tools: tools, Channel: "smoke"}, parts: whole, want: `unknown channel "smoke"`},
		"bulk over grpc":  {env: Env{Tools: tools, Mode: proc.ModeThroughput, Channel: ChannelGRPC}, parts: whole, want: "needs the http channel"},
		"bulk on streams": {env: Env{Tools: tools, Mode: proc.ModeThroughput, Channel: ChannelStream}, parts: whole, want: "no bulk delivery on subscription streams"},
		"stream on 1.16":  {env: Env{Tools: Tools{Root: tools.Root, BinDir: tools.BinDir, Daprd: proc.Daprd{Path: "/nonexistent/daprd", Version: "1.16.5"}}, Channel: ChannelStream}, parts: whole, want: "needs daprd 1.18 or later"},
		"unknown redis":   {env: Env{Tools: tools}, parts: []Part{Redis{Options: proc.RedisOptions{Source: "floppy"}}, PubSub{}, Node{}, PublisherSidecar{}}, want: "unknown Redis source"},
		"no subscriber":   {env: Env{Tools: tools}, parts: []Part{Redis{}, PubSub{}, PublisherSidecar{}}, want: "needs a subscriber"},
		"no pubsub":       {env: Env{Tools: tools}, parts: []Part{Redis{}, Node{}, PublisherSidecar{}}, want: "one PubSub part"},
		"two Redis":       {env: Env{Tools: tools}, parts: []Part{Redis{}, Redis{}, PubSub{}, Node{}, PublisherSidecar{}}, want: "one Redis part"},
		"out of order":    {env: Env{Tools: tools}, parts: []Part{Redis{}, PubSub{}, Node{}, Outbox{}, PublisherSidecar{}}, want: "outbox: comes after"},
		"outbox on sentinels": {env: Env{Tools: tools},
			parts: []Part{Redis{Sentinels: "127.0.0.1:1"}, PubSub{}, Outbox{}, Node{}, PublisherSidecar{}}, want: "not with Sentinels"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := Start(t.Context(), tc.env, tc.parts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v, %v; want an error with %q", r, err, tc.want)
			}
		})
	}
}

func TestChannelsByRuntime(t *testing.T) {
	for version, want := range map[string]string{"1.16.5": "[grpc http]", "1.17.0": "[grpc http]", "1.18.0": "[grpc stream http]", "2.0.0": "[grpc stream http]", "edge": "[grpc stream http]"} {
		if got := fmt.Sprint(Channels(version)); got != want {
			t.Errorf("Channels(%q) = %s, want %s", version, got, want)
		}
	}
}

func TestParseChannel(t *testing.T) {
	for in, want := range map[string]Channel{"": "", "grpc": ChannelGRPC, "stream": ChannelStream, "http": ChannelHTTP} {
		if got, err := ParseChannel(in); err != nil || got != want {
			t.Errorf("ParseChannel(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseChannel("carrier-pigeon"); err == nil {
		t.Error("ParseChannel accepted an unknown channel")
	}
}
