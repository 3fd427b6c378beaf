package subscriber

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"dapr-pub-sub/internal/store/storetest"
)

func TestBulkAnswersAStatusPerEntry(t *testing.T) {
	f := newFixture(Faults{})
	f.mem.Fail = func(op, key string) error {
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
	handleBulk(f.h, Bulk{MaxMessages: 100, MaxAwait: time.Millisecond, Workers: 4}, f.h.Log).
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
	if got := strings.Count(f.out.String(), "Received message"); got != 3 {
		t.Fatalf("%d orders printed, want 3:\n%s", got, f.out)
	}
	if f.h.Stats.Processed.Load() != 3 || f.h.Stats.Duplicates.Load() != 1 || f.h.Stats.Dropped.Load() != 3 || f.h.Stats.Retried.Load() != 1 {
		t.Fatalf("stats = %s", mustJSON(&f.h.Stats))
	}
}

func TestBulkRefusesABodyThatIsNoEnvelope(t *testing.T) {
	f := newFixture(Faults{})
	rec := httptest.NewRecorder()
	handleBulk(f.h, Bulk{MaxMessages: 10, MaxAwait: time.Millisecond, Workers: 1}, f.h.Log).
		ServeHTTP(rec, httptest.NewRequest(http.MethodPost, BulkOrdersRoute, strings.NewReader(`[1,2`)))
	if rec.Code != http.StatusBadRequest || f.out.String() != "" {
		t.Fatalf("status %d, out %q; want 400 and nothing processed", rec.Code, f.out)
	}
}

func TestBulkSubscriptionsAskForBatches(t *testing.T) {
	cfg := Config{PubSub: "pubsub", Topic: "orders", DeadLetterTopic: "orders-deadletter",
		Bulk: Bulk{MaxMessages: 200, MaxAwait: 10 * time.Millisecond}}
	b, _ := json.Marshal(bulkSubscriptions(cfg))
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
