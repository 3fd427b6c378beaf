package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"dapr-pub-sub/internal/harness/system"
	"dapr-pub-sub/internal/subscriber"
)

// TestTraceContextReachesTheHandler publishes an order under a trace of the
// test's own (a traceparent header on the publish call) and checks that the
// subscriber's span for that delivery belongs to the same trace: daprd
// carries the context through Redis to the subscriber's daprd, which sends
// it to the app, whose handler span is its child.
func TestTraceContextReachesTheHandler(t *testing.T) {
	s := startSystem(t, options{sub: func(c *subscriber.Config) { c.LogLevel = "debug" }})
	const traceID = "5d2a3c1e0f9b4a7c8e6d5f4a3b2c1d0e"
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		s.PubDaprd.HTTPURL()+"/v1.0/publish/pubsub/orders?metadata.cloudevent.id=traced-7",
		strings.NewReader(`{"id":7,"message":"traced"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("dapr-api-token", s.Secrets.APIToken)
	req.Header.Set("traceparent", "00-"+traceID+"-1a2b3c4d5e6f7a8b-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("publish = %d, want 204", resp.StatusCode)
	}
	s.waitDrained(1, time.Minute)

	var delivery string
	waitFor(t, 10*time.Second, "the delivery's debug log line", func() bool {
		for _, line := range s.received.logLines() {
			// The handler's line (not the debug access log's "Delivery
			// request"/"Delivery answered" lines): it carries trace_id.
			if strings.Contains(line, "traced-7") && strings.Contains(line, "trace_id") {
				delivery = line
				return true
			}
		}
		return false
	})
	// JSON logs when not on a terminal; accept text too.
	if !strings.Contains(delivery, `"trace_id":"`+traceID+`"`) && !strings.Contains(delivery, "trace_id="+traceID) {
		t.Fatalf("the handler's span is not in the publisher's trace %s:\n%s", traceID, delivery)
	}
}

// TestSidecarProbesTheAppsHealth checks, on each channel, that the
// subscriber's daprd runs the app health check (so that it stops delivering
// to an app that stops answering), as its metadata API reports: GET /healthz
// on the http channel, the HealthCheck RPC on grpc. On the stream channel
// daprd has no app channel and nothing to probe: a dead app is a closed
// stream, and the metadata shows no app port and the app's open streams.
func TestSidecarProbesTheAppsHealth(t *testing.T) {
	for _, channel := range system.Channels(tools.Daprd.Version) {
		t.Run(string(channel), func(t *testing.T) {
			s := startSystem(t, options{channel: channel})
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.Sub.Daprd.HTTPURL()+"/v1.0/metadata", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("dapr-api-token", s.Secrets.APIToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var md struct {
				Subscriptions []struct {
					Topic string `json:"topic"`
					Type  string `json:"type"`
				} `json:"subscriptions"`
				AppConnectionProperties struct {
					Port     int    `json:"port"`
					Protocol string `json:"protocol"`
					Health   *struct {
						HealthCheckPath     string `json:"healthCheckPath"`
						HealthProbeInterval string `json:"healthProbeInterval"`
						HealthThreshold     int    `json:"healthThreshold"`
					} `json:"health"`
				} `json:"appConnectionProperties"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
				t.Fatal(err)
			}
			app := md.AppConnectionProperties
			h := app.Health
			if channel == system.ChannelStream {
				streamed := 0
				for _, sub := range md.Subscriptions {
					if sub.Type == "STREAMING" {
						streamed++
					}
				}
				if app.Port != 0 || h != nil || streamed != 2 {
					t.Fatalf("app port %d, health check %+v, subscriptions %+v; want no app channel and 2 streaming subscriptions", app.Port, h, md.Subscriptions)
				}
				return
			}
			wantPath := map[system.Channel]string{system.ChannelHTTP: "/healthz"}[channel]
			if app.Protocol != string(channel) || h == nil || h.HealthCheckPath != wantPath || h.HealthProbeInterval != "1s" || h.HealthThreshold != 3 {
				t.Fatalf("app protocol %q, health check %+v; want %s, path %q, every 1s, threshold 3", app.Protocol, h, channel, wantPath)
			}
		})
	}
}
