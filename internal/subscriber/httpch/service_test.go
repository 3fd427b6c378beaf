package httpch

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/handler/handlertest"
)

// TestServiceAnswersDaprAsTheContractSays drives the real SDK service with
// the requests daprd sends, including bodies the SDK cannot decode.
func TestServiceAnswersDaprAsTheContractSays(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	// The SDK registers /dapr/subscribe only in Start, so serve for real.
	o := serviceOptions(t, f.H)
	var storeDown atomic.Bool
	o.Ready = handler.NewReadiness(nil, func(context.Context) error {
		if storeDown.Load() {
			return errors.New("state store unreachable")
		}
		return nil
	})
	svc, err := NewService(o)
	if err != nil {
		t.Fatal(err)
	}
	go svc.Start()   //nolint:errcheck // Stop ends it
	defer svc.Stop() //nolint:errcheck // the test is over
	base := "http://" + o.ListenAddr()
	waitServing(t, base)
	call := func(method, path, token, body string) (int, string) {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set(AppTokenHeader, token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	get := func(path string) (int, string) { return call(http.MethodGet, path, "app-secret", "") }
	// Readiness: not before daprd has read the subscriptions.
	if code, body := call(http.MethodGet, "/readyz", "", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "not subscribed") {
		t.Fatalf("/readyz before /dapr/subscribe = %d %s, want 503", code, body)
	}
	// Without the app token: 401 everywhere but the liveness probe, and nothing processed.
	if code, _ := call(http.MethodGet, "/healthz", "", ""); code != 200 {
		t.Fatalf("/healthz without a token = %d, want 200", code)
	}
	for _, path := range []string{"/dapr/subscribe", handler.OrdersRoute, handler.DeadLetterRoute, "/stats"} {
		for _, token := range []string{"", "wrong"} {
			if code, _ := call(http.MethodPost, path, token, `{"id":"x","data":{"id":77,"message":"m"}}`); code != http.StatusUnauthorized {
				t.Errorf("POST %s with token %q = %d, want 401", path, token, code)
			}
		}
	}
	if f.Out.String() != "" || f.Mem.Keys() != 0 {
		t.Fatalf("an unauthenticated call was processed: %q", f.Out)
	}
	code, body := get("/dapr/subscribe")
	if code, _ := call(http.MethodGet, "/readyz", "", ""); code != http.StatusOK {
		t.Fatalf("/readyz after /dapr/subscribe = %d, want 200", code)
	}
	storeDown.Store(true)
	if code, body := call(http.MethodGet, "/readyz", "", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "unreachable") {
		t.Fatalf("/readyz with the store down = %d %s, want 503", code, body)
	}
	storeDown.Store(false)
	if code != 200 || !strings.Contains(body, `"topic":"orders"`) || !strings.Contains(body, `"deadLetterTopic":"orders-deadletter"`) ||
		!strings.Contains(body, `"topic":"orders-deadletter"`) || !strings.Contains(body, `"rawPayload":"true"`) {
		t.Fatalf("/dapr/subscribe = %d %s", code, body)
	}
	post := func(route, event string) string {
		code, body := call(http.MethodPost, route, "app-secret", event)
		if code != 200 {
			t.Fatalf("POST %s %q = %d %s; daprd would retry it", route, event, code, body)
		}
		return body
	}
	answers := map[string]struct{ body, want string }{
		"good order":     {`{"id":"order-1","specversion":"1.0","datacontenttype":"application/json","data":{"id":1,"message":"hi","sent_at":"2026-01-02T03:04:05Z"},"topic":"orders","pubsubname":"pubsub"}`, "SUCCESS"},
		"duplicate":      {`{"id":"order-1b","datacontenttype":"application/json","data":{"id":1,"message":"hi","sent_at":"2026-01-02T03:04:05Z"}}`, "SUCCESS"},
		"data_base64":    {`{"id":"x","datacontenttype":"application/json","data_base64":"` + base64.StdEncoding.EncodeToString([]byte(`{"id":2,"message":"b64"}`)) + `"}`, "SUCCESS"},
		"invalid order":  {`{"id":"bad-1","datacontenttype":"application/json","data":{"id":-4,"message":"x"},"topic":"orders"}`, "DROP"},
		"empty body":     {``, "DROP"},
		"not JSON":       {`hello`, "DROP"},
		"JSON array":     {`[1,2]`, "DROP"},
		"numeric CE id":  {`{"id":123,"data":{"id":5,"message":"m"}}`, "DROP"},
		"malformed JSON": {`{"id":"m","data":{"id":5,`, "DROP"},
	}
	for name, a := range answers {
		if got := post(handler.OrdersRoute, a.body); !strings.Contains(got, a.want) {
			t.Errorf("%s answered %s, want %s", name, got, a.want)
		}
	}
	if want := 2; strings.Count(f.Out.String(), "Received message") != want {
		t.Fatalf("out = %q, want %d orders", f.Out, want)
	}
	if code, body := get("/stats"); code != 200 || !strings.Contains(body, `"processed":2`) || !strings.Contains(body, `"duplicates":1`) {
		t.Fatalf("/stats = %d %s", code, body)
	}
	// Prometheus, open like the probes: every delivery above by outcome.
	code, metrics := call(http.MethodGet, "/metrics", "", "")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`orders_deliveries_total{outcome="success"} 2`, `orders_deliveries_total{outcome="duplicate"} 1`,
		`orders_deliveries_total{outcome="drop"} 6`, `orders_deliveries_total{outcome="retry"} 0`,
		`orders_handler_seconds_count{outcome="success"} 2`, "go_goroutines",
		"orders_end_to_end_seconds_count 1", // order 1's effect, whichever delivery of it came first; order 2 has no sent_at
		`orders_end_to_end_seconds_bucket{le="+Inf"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// serviceOptions are Options for a service of h on a free loopback port,
// with the app token "app-secret", to which daprd delivers the orders
// from pubsub/orders and their dead letters.
func serviceOptions(t *testing.T, h *handler.Handler) Options {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return Options{Address: "127.0.0.1", Port: port, AppToken: "app-secret", Handler: h, Log: h.Log,
		Subscriptions: h.Subscriptions(handler.Topics{PubSub: "pubsub", Topic: "orders", DeadLetterTopic: "orders-deadletter"})}
}

// waitServing polls base's /healthz until the service answers 200.
func waitServing(t *testing.T, base string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := proc.WaitHTTP(ctx, base+"/healthz", http.StatusOK, nil); err != nil {
		t.Fatalf("service did not start listening: %v", err)
	}
}

// TestReadyWhenDaprdHoldsTheSubscription: an app started after its daprd
// read the subscriptions (the kubelet restarted the app container alone)
// is ready once daprd says it holds them, and not while it does not.
func TestReadyWhenDaprdHoldsTheSubscription(t *testing.T) {
	holds := false
	ready := handler.NewReadiness(func(context.Context) bool { return holds }, nil)
	h := handleReady(ready)
	get := func() int {
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	if code := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while daprd holds no subscription = %d, want 503", code)
	}
	holds = true
	if code := get(); code != http.StatusOK || !ready.Subscribed() {
		t.Fatalf("/readyz once daprd holds it = %d (subscribed %v), want 200", code, ready.Subscribed())
	}
}
