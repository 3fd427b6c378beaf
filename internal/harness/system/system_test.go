package system

import (
	"fmt"
	"strings"
	"testing"

	"dapr-pub-sub/internal/harness/proc"
)

// TestStartRefusesWhatCannotRun: a spec that cannot run is refused before
// any process starts, with the reason.
func TestStartRefusesWhatCannotRun(t *testing.T) {
	tools := Tools{Root: t.TempDir(), Daprd: proc.Daprd{Path: "/nonexistent/daprd"}, BinDir: t.TempDir()}
	tests := map[string]struct {
		spec Spec
		want string
	}{
		"no tools":        {spec: Spec{}, want: "not prepared"},
		"unknown channel": {spec: Spec{Tools: tools, Channel: "smoke"}, want: `unknown channel "smoke"`},
		"bulk over grpc":  {spec: Spec{Tools: tools, Mode: proc.ModeThroughput, Channel: ChannelGRPC}, want: "needs the http channel"},
		"bulk on streams": {spec: Spec{Tools: tools, Mode: proc.ModeThroughput, Channel: ChannelStream}, want: "no bulk delivery on subscription streams"},
		"stream on 1.16":  {spec: Spec{Tools: Tools{Root: tools.Root, BinDir: tools.BinDir, Daprd: proc.Daprd{Path: "/nonexistent/daprd", Version: "1.16.5"}}, Channel: ChannelStream}, want: "needs daprd 1.18 or later"},
		"unknown redis":   {spec: Spec{Tools: tools, Redis: proc.RedisOptions{Source: "floppy"}}, want: "unknown Redis source"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r, err := Start(t.Context(), tc.spec)
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
