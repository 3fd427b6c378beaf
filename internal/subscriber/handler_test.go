package subscriber

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dapr/go-sdk/service/common"

	"dapr-pub-sub/internal/harness/launcher"
	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/store/storetest"
	"dapr-pub-sub/internal/testutil"
)

type syncBuffer = testutil.SyncBuffer

type fixture struct {
	h    *Handler
	mem  *storetest.Mem
	st   *store.Store
	out  *syncBuffer
	logs *syncBuffer
}

func newFixture(faults Faults) *fixture {
	f := &fixture{mem: &storetest.Mem{}, out: &syncBuffer{}, logs: &syncBuffer{}}
	f.st = store.New(f.mem, "statestore", "subscriber")
	f.h = NewHandler(HandlerConfig{
		Store: f.st, Out: f.out, Log: slog.New(slog.NewTextHandler(f.logs, nil)),
		Timeout: time.Second, PubSub: "pubsub", Topic: "orders", Faults: faults, Metrics: NewMetrics(),
	})
	return f
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
			f := newFixture(Faults{})
			retry, err := f.h.HandleOrder(t.Context(), &tc.event)
			if retry {
				t.Fatalf("retry = true; an order is never retried for its data")
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if f.out.String() != tc.wantOut {
				t.Fatalf("out = %q, want %q", f.out, tc.wantOut)
			}
			if got := strings.Contains(f.logs.String(), "application/json"); got != tc.wantWarn {
				t.Fatalf("content-type warning logged = %v, want %v; logs: %s", got, tc.wantWarn, f.logs)
			}
			if tc.wantErr && (!strings.Contains(f.logs.String(), "event_id="+tc.event.ID) || f.h.Stats.Dropped.Load() != 1) {
				t.Fatalf("drop not counted or not logged with the event id: %s", f.logs)
			}
		})
	}
}

func TestDuplicateDeliveriesApplyTheEffectOnce(t *testing.T) {
	f := newFixture(Faults{})
	ev := common.TopicEvent{ID: "order-9", RawData: []byte(`{"id":9,"message":"m"}`)}
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := ev
			if retry, err := f.h.HandleOrder(t.Context(), &e); retry || err != nil {
				t.Errorf("delivery answered retry=%v err=%v, want SUCCESS", retry, err)
			}
		}()
	}
	wg.Wait()
	if got := strings.Count(f.out.String(), "Received message"); got != 1 {
		t.Fatalf("effect applied %d times, want 1", got)
	}
	if f.h.Stats.Processed.Load() != 1 || f.h.Stats.Duplicates.Load() != 9 {
		t.Fatalf("stats = %s", mustJSON(&f.h.Stats))
	}
	if f.mem.Version("subscriber/order/9") != 1 {
		t.Fatalf("record written %d times", f.mem.Version("subscriber/order/9"))
	}
	if !strings.Contains(f.logs.String(), "Duplicate delivery") {
		t.Fatal("duplicates not logged")
	}
}

func TestTransientFailuresAreRetried(t *testing.T) {
	f := newFixture(Faults{})
	down := true
	f.mem.Fail = func(string, string) error {
		if down {
			return storetest.ErrUnavailable
		}
		return nil
	}
	ev := &common.TopicEvent{ID: "x", RawData: []byte(`{"id":1,"message":"m"}`)}
	if retry, err := f.h.HandleOrder(t.Context(), ev); !retry || !errors.Is(err, storetest.ErrUnavailable) {
		t.Fatalf("store down: retry=%v err=%v, want RETRY", retry, err)
	}
	if f.out.String() != "" {
		t.Fatal("effect applied although the record was not written")
	}
	down = false
	if retry, err := f.h.HandleOrder(t.Context(), ev); retry || err != nil {
		t.Fatalf("store back: retry=%v err=%v, want SUCCESS", retry, err)
	}
}

// TestAWriteThatLandedDespiteItsErrorIsCompleted: the record write is
// applied but its call fails (daprd killed mid-call). If the store can be
// read at once, the record's own attempt token shows the write landed and
// the effect applies; if not, the redelivery finds the record of its own
// failed attempt and applies the effect then — once either way, and a
// later delivery is a duplicate.
func TestAWriteThatLandedDespiteItsErrorIsCompleted(t *testing.T) {
	for _, readable := range []bool{true, false} {
		t.Run(fmt.Sprint("readable after the failed call: ", readable), func(t *testing.T) {
			f := newFixture(Faults{})
			broken := true
			f.mem.FailAfterSave = func(string) error {
				if broken {
					return storetest.ErrUnavailable
				}
				return nil
			}
			f.mem.Fail = func(op, _ string) error {
				if broken && op == "get" && !readable {
					return storetest.ErrUnavailable
				}
				return nil
			}
			ev := &common.TopicEvent{ID: "order-1", RawData: []byte(`{"id":1,"message":"m"}`)}
			retry, err := f.h.HandleOrder(t.Context(), ev)
			if readable != (!retry && err == nil) {
				t.Fatalf("call broken after the write: retry=%v err=%v; want SUCCESS only when the record can be read", retry, err)
			}
			broken = false
			for range 2 {
				if retry, err := f.h.HandleOrder(t.Context(), ev); retry || err != nil {
					t.Fatalf("redelivery: retry=%v err=%v, want SUCCESS", retry, err)
				}
			}
			if got := strings.Count(f.out.String(), "Received message"); got != 1 {
				t.Fatalf("effect applied %d times, want once:\n%s", got, f.out.String())
			}
			if p, d := f.h.Stats.Processed.Load(), f.h.Stats.Duplicates.Load(); p != 1 || d != int64(map[bool]int{true: 2, false: 1}[readable]) {
				t.Fatalf("%d processed, %d duplicates", p, d)
			}
		})
	}
}

func TestPanicIsRecoveredAndRetried(t *testing.T) {
	f := newFixture(Faults{})
	f.mem.Fail = func(string, string) error { panic("boom") }
	retry, err := f.h.HandleOrder(t.Context(), &common.TopicEvent{ID: "p-1", RawData: []byte(`{"id":1,"message":"m"}`)})
	if !retry || err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panic: retry=%v err=%v, want RETRY", retry, err)
	}
	if !strings.Contains(f.logs.String(), "event_id=p-1") {
		t.Fatalf("panic not logged with the event id: %s", f.logs)
	}
}

func TestTimeoutIsRetried(t *testing.T) {
	f := newFixture(Faults{Delay: time.Hour})
	f.h.Timeout = 20 * time.Millisecond
	retry, err := f.h.HandleOrder(t.Context(), &common.TopicEvent{RawData: []byte(`{"id":1,"message":"m"}`)})
	if !retry || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow order: retry=%v err=%v, want RETRY on the deadline", retry, err)
	}
}

func TestFailFirstEveryFailsOnlyTheFirstDelivery(t *testing.T) {
	f := newFixture(Faults{FailFirstEvery: 10})
	ev := func(id string) *common.TopicEvent {
		return &common.TopicEvent{RawData: []byte(`{"id":` + id + `,"message":"m"}`)}
	}
	if retry, _ := f.h.HandleOrder(t.Context(), ev("20")); !retry {
		t.Fatal("first delivery of order 20 not failed")
	}
	if retry, err := f.h.HandleOrder(t.Context(), ev("20")); retry || err != nil {
		t.Fatalf("second delivery of order 20: %v %v", retry, err)
	}
	if retry, err := f.h.HandleOrder(t.Context(), ev("21")); retry || err != nil {
		t.Fatalf("order 21: %v %v", retry, err)
	}
}

func TestDeadLettersAreUnwrappedAndKeptOnce(t *testing.T) {
	f := newFixture(Faults{})
	original := `{"id":"order-3","topic":"orders","pubsubname":"pubsub","datacontenttype":"application/json","data":{"id":-3,"message":"x"}}`
	for range 2 { // redelivered: stored once
		if retry, err := f.h.HandleDeadLetter(t.Context(), &common.TopicEvent{ID: "wrapper", RawData: []byte(original)}); retry || err != nil {
			t.Fatalf("dead letter: %v %v", retry, err)
		}
	}
	if retry, err := f.h.HandleDeadLetter(t.Context(), &common.TopicEvent{RawData: []byte("not json at all")}); retry || err != nil {
		t.Fatalf("raw dead letter: %v %v", retry, err)
	}
	list, err := f.st.DeadLetters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || f.h.Stats.DeadLetters.Load() != 2 {
		t.Fatalf("kept %d dead letters (%d counted), want 2: %+v", len(list), f.h.Stats.DeadLetters.Load(), list)
	}
	dl := list[0]
	if dl.EventID != "order-3" || dl.Topic != "orders" || string(dl.Data) != `{"id":-3,"message":"x"}` || !strings.Contains(dl.Reason, "id must be ≥ 0") {
		t.Fatalf("dead letter = %+v", dl)
	}
	if raw := list[1]; !strings.HasPrefix(raw.EventID, "raw-") || string(raw.Data) != "not json at all" || !strings.Contains(raw.Reason, "not a CloudEvent") {
		t.Fatalf("raw dead letter = %+v", raw)
	}
}

func TestDeadLetterStoreDownIsRetried(t *testing.T) {
	f := newFixture(Faults{})
	f.mem.Fail = func(string, string) error { return storetest.ErrUnavailable }
	if retry, err := f.h.HandleDeadLetter(t.Context(), &common.TopicEvent{RawData: []byte(`{"id":"e1","data":{}}`)}); !retry || err == nil {
		t.Fatalf("store down: retry=%v err=%v, want RETRY", retry, err)
	}
}

// TestServiceAnswersDaprAsTheContractSays drives the real SDK service with
// the requests daprd sends, including bodies the SDK cannot decode.
func TestServiceAnswersDaprAsTheContractSays(t *testing.T) {
	f := newFixture(Faults{})
	// The SDK registers /dapr/subscribe only in Start, so serve for real.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := Config{Address: "127.0.0.1", Port: port, PubSub: "pubsub", Topic: "orders", DeadLetterTopic: "orders-deadletter", AppToken: "app-secret"}
	var storeDown atomic.Bool
	svc, err := NewService(cfg, f.h, f.h.Log, func(context.Context) error {
		if storeDown.Load() {
			return errors.New("state store unreachable")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	go svc.Start()   //nolint:errcheck // Stop ends it
	defer svc.Stop() //nolint:errcheck // the test is over
	base := "http://" + cfg.ListenAddr()
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
	for _, path := range []string{"/dapr/subscribe", OrdersRoute, DeadLetterRoute, "/stats"} {
		for _, token := range []string{"", "wrong"} {
			if code, _ := call(http.MethodPost, path, token, `{"id":"x","data":{"id":77,"message":"m"}}`); code != http.StatusUnauthorized {
				t.Errorf("POST %s with token %q = %d, want 401", path, token, code)
			}
		}
	}
	if f.out.String() != "" || f.mem.Keys() != 0 {
		t.Fatalf("an unauthenticated call was processed: %q", f.out)
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
		if got := post(OrdersRoute, a.body); !strings.Contains(got, a.want) {
			t.Errorf("%s answered %s, want %s", name, got, a.want)
		}
	}
	if want := 2; strings.Count(f.out.String(), "Received message") != want {
		t.Fatalf("out = %q, want %d orders", f.out, want)
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

// waitServing polls base's /healthz until the service answers 200.
func waitServing(t *testing.T, base string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := launcher.WaitHTTP(ctx, base+"/healthz", http.StatusOK, nil); err != nil {
		t.Fatalf("service did not start listening: %v", err)
	}
}

func mustJSON(s *Stats) string {
	b, _ := s.MarshalJSON()
	return string(b)
}

// TestConflictingDuplicateIsDeadLettered: an order republished with the same
// id but another message keeps the first write and goes to the dead-letter
// topic with the reason; an identical redelivery stays a quiet duplicate.
func TestConflictingDuplicateIsDeadLettered(t *testing.T) {
	f := newFixture(Faults{})
	ctx := t.Context()
	deliver := func(msg string) (bool, error) {
		return f.h.HandleOrder(ctx, &common.TopicEvent{ID: "order-506", RawData: []byte(`{"id":506,"message":"` + msg + `"}`)})
	}
	if retry, err := deliver("first"); retry || err != nil {
		t.Fatalf("first delivery = %v, %v", retry, err)
	}
	retry, err := deliver("second")
	if retry || err == nil || err.Error() != "conflicting duplicate of order 506: message differs" {
		t.Fatalf("conflicting delivery = %v, %v; want DROP with the reason", retry, err)
	}
	if retry, err := deliver("first"); retry || err != nil {
		t.Fatalf("identical redelivery = %v, %v; want a quiet SUCCESS", retry, err)
	}
	if c, d := f.h.Stats.Conflicts.Load(), f.h.Stats.Duplicates.Load(); c != 1 || d != 1 {
		t.Errorf("conflicts %d, duplicates %d; want 1 and 1", c, d)
	}
	if !strings.Contains(f.logs.String(), "Conflicting duplicate") {
		t.Error("no WARN line for the conflict")
	}
	rec, _, err := f.st.ProcessedRecord(ctx, 506)
	if err != nil || rec.Order.Message != "first" {
		t.Fatalf("record = %+v, %v; want the first write kept", rec, err)
	}
	// daprd hands the dropped CloudEvent to the dead-letter route.
	ce := `{"id":"order-506","specversion":"1.0","source":"publisher","type":"com.dapr.event.sent","datacontenttype":"application/json","data":{"id":506,"message":"second"}}`
	if retry, err := f.h.HandleDeadLetter(ctx, &common.TopicEvent{ID: "order-506", RawData: []byte(ce)}); retry || err != nil {
		t.Fatalf("dead letter = %v, %v", retry, err)
	}
	dls, err := f.st.DeadLetters(ctx)
	if err != nil || len(dls) != 1 || !strings.HasPrefix(dls[0].Reason, "conflicting duplicate of order 506: message differs") {
		t.Fatalf("dead letters = %+v, %v; want one with the conflict as its reason", dls, err)
	}
}

// TestReadyWhenDaprdHoldsTheSubscription: an app started after its daprd
// read the subscriptions (the kubelet restarted the app container alone)
// is ready once daprd says it holds them, and not while it does not.
func TestReadyWhenDaprdHoldsTheSubscription(t *testing.T) {
	var subscribed atomic.Bool
	holds := false
	h := handleReady(&subscribed, func(context.Context) bool { return holds }, nil)
	get := func() int {
		rec := httptest.NewRecorder()
		h(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code
	}
	if code := get(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while daprd holds no subscription = %d, want 503", code)
	}
	holds = true
	if code := get(); code != http.StatusOK || !subscribed.Load() {
		t.Fatalf("/readyz once daprd holds it = %d (subscribed %v), want 200", code, subscribed.Load())
	}
}

// TestEveryHandlerHasTheMiddleware: both handlers run in the same
// middleware, so a panic in either is recovered into RETRY and counted,
// measured, observed and traced the same way.
func TestEveryHandlerHasTheMiddleware(t *testing.T) {
	for name, handle := range map[string]func(*Handler) common.TopicEventHandler{
		"orders":       func(h *Handler) common.TopicEventHandler { return h.HandleOrder },
		"dead letters": func(h *Handler) common.TopicEventHandler { return h.HandleDeadLetter },
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(Faults{})
			var seen []Delivery
			f.h.Observe = func(d Delivery) { seen = append(seen, d) }
			f.mem.Fail = func(string, string) error { panic("boom") }
			e := &common.TopicEvent{ID: "p-1", Topic: "t", RawData: []byte(`{"id":"order-1","data":{"id":1,"message":"m"}}`)}
			if name == "orders" {
				e.RawData = []byte(`{"id":1,"message":"m"}`)
			}
			retry, err := handle(f.h)(t.Context(), e)
			if !retry || err == nil || !strings.Contains(err.Error(), "panic: boom") {
				t.Fatalf("panic: retry=%v err=%v, want RETRY", retry, err)
			}
			if n := f.h.Stats.Retried.Load(); n != 1 {
				t.Errorf("Stats.Retried = %d, want 1", n)
			}
			if len(seen) != 1 || seen[0].Outcome != OutcomeRetry || !strings.Contains(seen[0].Reason, "boom") || seen[0].Duration <= 0 {
				t.Errorf("observed %+v, want one retry with the panic as its reason", seen)
			}
			if !strings.Contains(f.logs.String(), "Recovered from a panic") || !strings.Contains(f.logs.String(), "event_id=p-1") {
				t.Errorf("panic not logged with the event id: %s", f.logs)
			}
			if got := counterValue(t, f.h.Metrics, "orders_deliveries_total", OutcomeRetry); got != 1 {
				t.Errorf("orders_deliveries_total{outcome=retry} = %v, want 1", got)
			}
		})
	}
}

// counterValue reads a labelled counter from m's registry.
func counterValue(t *testing.T, m *Metrics, name, outcome string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, c := range mf.GetMetric() {
			for _, l := range c.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return c.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
