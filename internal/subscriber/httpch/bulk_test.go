package httpch

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"dapr-pub-sub/internal/store/storetest"
	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/handler/handlertest"
)

func TestBulkAnswersAStatusPerEntry(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	f.Mem.Fail = func(op, key string) error {
		if op == "save" && strings.HasSuffix(key, "/order/9") {
			return storetest.ErrUnavailable
		}
		return nil
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(`{"id":3,"message":"b64"}`))
	entries := map[string]struct {
		event string
		want  string
	}{
		"good":      {`{"id":"order-1","datacontenttype":"application/json","data":{"id":1,"message":"one"}}`, "SUCCESS"},
		"other":     {`{"id":"order-2","data":{"id":2,"message":"two"}}`, "SUCCESS"},
		"base64":    {`{"id":"order-3","datacontenttype":"application/json","data_base64":"` + b64 + `"}`, "SUCCESS"},
		"dup":       {`{"id":"order-1-again","data":{"id":1,"message":"one"}}`, "SUCCESS"},
		"invalid":   {`{"id":"bad","data":{"id":-1,"message":"x"}}`, "DROP"},
		"not a CE":  {`"hello"`, "DROP"},
		"bad b64":   {`{"id":"b","data_base64":"%%%"}`, "DROP"},
		"store off": {`{"id":"order-9","data":{"id":9,"message":"nine"}}`, "RETRY"},
	}
	var req bulkRequest
	req.Topic, req.PubsubName = "orders", "pubsub"
	for id, e := range entries {
		req.Entries = append(req.Entries, bulkEntry{EntryID: id, Event: json.RawMessage(e.event), ContentType: "application/cloudevents+json"})
	}
	body, _ := json.Marshal(req)
	rec := httptest.NewRecorder()
	handleBulk(f.H, Bulk{MaxMessages: 100, MaxAwait: time.Millisecond, Workers: 4}, f.H.Log).
		ServeHTTP(rec, httptest.NewRequest(http.MethodPost, BulkOrdersRoute, strings.NewReader(string(body))))
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var resp bulkResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Statuses) != len(entries) {
		t.Fatalf("%d statuses for %d entries: %s", len(resp.Statuses), len(entries), rec.Body)
	}
	for _, s := range resp.Statuses {
		if want := entries[s.EntryID].want; string(s.Status) != want {
			t.Errorf("entry %q: %s, want %s", s.EntryID, s.Status, want)
		}
	}
	// Orders 1, 2, 3 once each, whatever order the workers took them in.
	if got := strings.Count(f.Out.String(), "Received message"); got != 3 {
		t.Fatalf("%d orders printed, want 3:\n%s", got, f.Out)
	}
	if f.H.Stats.Processed.Load() != 3 || f.H.Stats.Duplicates.Load() != 1 || f.H.Stats.Dropped.Load() != 3 || f.H.Stats.Retried.Load() != 1 {
		t.Fatalf("stats = %s", handlertest.StatsJSON(&f.H.Stats))
	}
}

func TestBulkRefusesABodyThatIsNoEnvelope(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	rec := httptest.NewRecorder()
	handleBulk(f.H, Bulk{MaxMessages: 10, MaxAwait: time.Millisecond, Workers: 1}, f.H.Log).
		ServeHTTP(rec, httptest.NewRequest(http.MethodPost, BulkOrdersRoute, strings.NewReader(`[1,2`)))
	if rec.Code != http.StatusBadRequest || f.Out.String() != "" {
		t.Fatalf("status %d, out %q; want 400 and nothing processed", rec.Code, f.Out)
	}
}

func TestBulkSubscriptionsAskForBatches(t *testing.T) {
	subs := handlertest.Quiet().Subscriptions(handler.Topics{PubSub: "pubsub", Topic: "orders", DeadLetterTopic: "orders-deadletter"})
	b, _ := json.Marshal(bulkSubscriptions(subs, Bulk{MaxMessages: 200, MaxAwait: 10 * time.Millisecond}))
	for _, want := range []string{
		`"route":"/orders-bulk"`, `"deadLetterTopic":"orders-deadletter"`,
		`"bulkSubscribe":{"enabled":true,"maxMessagesCount":200,"maxAwaitDurationMs":10}`,
		`"topic":"orders-deadletter","route":"/orders-deadletter","metadata":{"rawPayload":"true"}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/dapr/subscribe answer lacks %s:\n%s", want, b)
		}
	}
}

// BenchmarkBulk100 is one bulk delivery of 100 orders; divide by 100 for
// the cost per order.
func BenchmarkBulk100(b *testing.B) {
	h := handlertest.Quiet()
	handler := handleBulk(h, Bulk{MaxMessages: 100, MaxAwait: time.Millisecond, Workers: 32}, h.Log)
	var id int
	body := func() string {
		var req bulkRequest
		req.Topic, req.PubsubName = "orders", "pubsub"
		for i := range 100 {
			id++
			ev := fmt.Sprintf(`{"id":"order-%d","specversion":"1.0","datacontenttype":"application/json","topic":"orders","pubsubname":"pubsub","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","data":{"id":%d,"message":"Hello from publisher - message %d"}}`, id, id, id)
			req.Entries = append(req.Entries, bulkEntry{EntryID: fmt.Sprint(i), Event: json.RawMessage(ev)})
		}
		b, _ := json.Marshal(req)
		return string(b)
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		req := httptest.NewRequest(http.MethodPost, BulkOrdersRoute, strings.NewReader(body()))
		rec := httptest.NewRecorder()
		b.StartTimer()
		handler.ServeHTTP(rec, req)
		if rec.Code != 200 || strings.Contains(rec.Body.String(), "RETRY") {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}
