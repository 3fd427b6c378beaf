package subscriber

import (
	"bytes"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dapr/go-sdk/service/common"
)

func newTestHandler() (*Handler, *bytes.Buffer, *bytes.Buffer) {
	var out, logs bytes.Buffer
	return NewHandler(&out, slog.New(slog.NewTextHandler(&logs, nil))), &out, &logs
}

func TestHandleOrder(t *testing.T) {
	tests := map[string]struct {
		event    common.TopicEvent
		wantErr  bool
		wantOut  string
		wantWarn bool
	}{
		"object":    {event: common.TopicEvent{ID: "a", RawData: []byte(`{"id":1,"message":"hi"}`)}, wantOut: `Received message: {"id": 1, "message": "hi"}` + "\n"},
		"string":    {event: common.TopicEvent{ID: "b", RawData: []byte(`"{\"id\":2,\"message\":\"hi\"}"`)}, wantOut: `Received message: {"id": 2, "message": "hi"}` + "\n", wantWarn: true},
		"data only": {event: common.TopicEvent{ID: "c", Data: map[string]any{"id": 3, "message": "m"}}, wantOut: `Received message: {"id": 3, "message": "m"}` + "\n"},
		"bad shape": {event: common.TopicEvent{ID: "d", RawData: []byte(`{"order":1}`)}, wantErr: true},
		"empty":     {event: common.TopicEvent{ID: "e"}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h, out, logs := newTestHandler()
			retry, err := h.HandleOrder(t.Context(), &tc.event)
			if retry {
				t.Fatalf("retry = true; an order is never retried for its data")
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if out.String() != tc.wantOut {
				t.Fatalf("out = %q, want %q", out, tc.wantOut)
			}
			if got := strings.Contains(logs.String(), "application/json"); got != tc.wantWarn {
				t.Fatalf("content-type warning logged = %v, want %v; logs: %s", got, tc.wantWarn, logs)
			}
			if tc.wantErr && !strings.Contains(logs.String(), "event_id="+tc.event.ID) {
				t.Fatalf("drop not logged with the event id: %s", logs)
			}
		})
	}
}

// failingWriter makes the "effect" of an order fail.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestHandleOrderRetriesWhenItsEffectFails(t *testing.T) {
	h := NewHandler(failingWriter{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	retry, err := h.HandleOrder(t.Context(), &common.TopicEvent{RawData: []byte(`{"id":1,"message":"m"}`)})
	if !retry || err == nil {
		t.Fatalf("HandleOrder = %v, %v; want retry with an error", retry, err)
	}
}

// TestServiceAnswersDaprAsTheContractSays drives the real SDK service mux
// with the requests daprd sends.
func TestServiceAnswersDaprAsTheContractSays(t *testing.T) {
	h, out, logs := newTestHandler()
	// The SDK registers /dapr/subscribe only in Start, so serve for real.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := Config{Address: "127.0.0.1", Port: port, PubSub: "pubsub", Topic: "orders", DeadLetterTopic: "orders-deadletter"}
	svc, err := NewService(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	go svc.Start() //nolint:errcheck // Stop ends it
	defer svc.Stop()
	srv := struct{ URL string }{"http://" + cfg.ListenAddr()}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(srv.URL + "/healthz"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("service did not start listening")
		}
	}

	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	code, body := get("/dapr/subscribe")
	if code != 200 || !strings.Contains(body, `"topic":"orders"`) || !strings.Contains(body, `"deadLetterTopic":"orders-deadletter"`) ||
		!strings.Contains(body, `"topic":"orders-deadletter"`) {
		t.Fatalf("/dapr/subscribe = %d %s", code, body)
	}

	post := func(route, event string) string {
		resp, err := http.Post(srv.URL+route, "application/cloudevents+json", strings.NewReader(event))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s = %d %s", route, resp.StatusCode, b)
		}
		return string(b)
	}
	ok := `{"id":"order-1","specversion":"1.0","datacontenttype":"application/json","data":{"id":1,"message":"hi"},"topic":"orders","pubsubname":"pubsub"}`
	if got := post(OrdersRoute, ok); !strings.Contains(got, "SUCCESS") {
		t.Fatalf("good order answered %s, want SUCCESS", got)
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(`{"id":2,"message":"b64"}`))
	if got := post(OrdersRoute, `{"id":"x","datacontenttype":"application/json","data_base64":"`+b64+`"}`); !strings.Contains(got, "SUCCESS") {
		t.Fatalf("data_base64 order answered %s, want SUCCESS", got)
	}
	bad := `{"id":"bad-1","datacontenttype":"application/json","data":{"id":-4,"message":"x"},"topic":"orders"}`
	if got := post(OrdersRoute, bad); !strings.Contains(got, "DROP") {
		t.Fatalf("invalid order answered %s, want DROP", got)
	}
	if got := post(DeadLetterRoute, bad); !strings.Contains(got, "SUCCESS") {
		t.Fatalf("dead letter answered %s, want SUCCESS (kept, not redelivered)", got)
	}
	if want := "Received message: {\"id\": 1, \"message\": \"hi\"}\nReceived message: {\"id\": 2, \"message\": \"b64\"}\n"; out.String() != want {
		t.Fatalf("out = %q, want %q", out, want)
	}
	if !strings.Contains(logs.String(), "Dead letter") || !strings.Contains(logs.String(), "id must be ≥ 0") {
		t.Fatalf("dead letter not logged with its reason: %s", logs)
	}
}
