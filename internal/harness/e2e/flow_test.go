package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/publisher"
)

// TestHundredOrdersArriveExactlyOnce is the original example's flow at scale: 100 orders
// through the publisher binary, its daprd, Redis, the subscriber's daprd and
// the subscriber binary, each received exactly once with the data sent.
func TestHundredOrdersArriveExactlyOnce(t *testing.T) {
	const n = 100
	s := startSystem(t)
	s.publish(func(c *publisher.Config) { c.Count, c.Interval = 100, 0 })
	s.waitDrained(n, time.Minute)

	counts, orders, bad := s.received.snapshot()
	if len(bad) > 0 {
		t.Fatalf("undecodable Received lines: %q", bad)
	}
	if len(counts) != n {
		t.Fatalf("received %d distinct orders, want %d", len(counts), n)
	}
	for id := range int64(n) {
		if counts[id] != 1 {
			t.Errorf("order %d received %d times, want exactly once", id, counts[id])
		}
		if orders[id] != order.New(id) {
			t.Errorf("order %d arrived as %+v, want %+v", id, orders[id], order.New(id))
		}
	}
	for _, line := range s.received.logLines() {
		if strings.Contains(line, "arrived as a JSON string") || strings.Contains(line, "Dropping") {
			t.Errorf("subscriber complained: %s", line)
		}
	}
	// The real subscriber is ready (daprd read its subscriptions, the state
	// store answers) and its metrics count the deliveries.
	base := "http://127.0.0.1:" + strconv.Itoa(s.Sub.Port)
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d %s, want 200", code, body)
	}
	if _, metrics := httpGet(t, base+"/metrics"); !strings.Contains(metrics, `orders_deliveries_total{outcome="success"} 100`) {
		t.Errorf("/metrics does not count 100 successful deliveries:\n%.2000s", metrics)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDataIsStoredAsAJSONObject reads the stream in Redis: each entry is a
// CloudEvent whose data is a JSON object with content type
// application/json, under the publisher's stable id.
func TestDataIsStoredAsAJSONObject(t *testing.T) {
	s := startSystem(t)
	s.publish(func(c *publisher.Config) { c.Count, c.Interval, c.StartID = 3, 0, 40 })
	s.waitDrained(3, time.Minute)

	entries, err := s.redis.XRange(t.Context(), "orders", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		t.Fatalf("stream has %d entries, want 3", len(entries))
	}
	for i, e := range entries {
		raw, ok := e.Values["data"].(string)
		if !ok {
			t.Fatalf("entry %s has no data field: %v", e.ID, e.Values)
		}
		var ce struct {
			ID              string          `json:"id"`
			DataContentType string          `json:"datacontenttype"`
			Data            json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(raw), &ce); err != nil {
			t.Fatalf("entry %s is not a CloudEvent: %v: %s", e.ID, err, raw)
		}
		id := int64(40 + i)
		if ce.ID != order.CloudEventID(id) {
			t.Errorf("CloudEvent id = %q, want %q", ce.ID, order.CloudEventID(id))
		}
		if ce.DataContentType != "application/json" {
			t.Errorf("datacontenttype = %q, want application/json", ce.DataContentType)
		}
		if len(ce.Data) == 0 || ce.Data[0] != '{' {
			t.Fatalf("data is not a JSON object: %s", ce.Data)
		}
		var o order.Order
		if err := json.Unmarshal(ce.Data, &o); err != nil || o.ID != id || o.Message != order.New(id).Message || o.SentAt.IsZero() {
			t.Errorf("data = %s, want %+v", ce.Data, order.New(id))
		}
	}
}

// TestPlainHTTPPublishIsReceived publishes as the README's curl does, with
// no SDK, to the publisher's sidecar.
func TestPlainHTTPPublishIsReceived(t *testing.T) {
	s := startSystem(t)
	if code, body := s.publishHTTP("pubsub", "orders", "application/json", `{"id":7,"message":"hi"}`); code != http.StatusNoContent {
		t.Fatalf("publish answered %d %s, want 204", code, body)
	}
	s.waitDrained(1, time.Minute)
	counts, orders, _ := s.received.snapshot()
	if counts[7] != 1 || orders[7] != (order.Order{ID: 7, Message: "hi"}) {
		t.Fatalf("received %v %v, want order 7 once", counts, orders)
	}
}

// TestPublishFromAFile publishes orders written in a JSON-lines file.
func TestPublishFromAFile(t *testing.T) {
	s := startSystem(t)
	file := filepath.Join(t.TempDir(), "orders.jsonl")
	lines := "{\"id\": 500, \"message\": \"from a file\"}\n\n{\"id\": 501, \"message\": \"line three\"}\n"
	if err := os.WriteFile(file, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	s.publish(func(c *publisher.Config) { c.File, c.Rate = file, 100 })
	s.waitDrained(2, time.Minute)
	_, orders, _ := s.received.snapshot()
	if orders[500].Message != "from a file" || orders[501].Message != "line three" {
		t.Fatalf("received %v", orders)
	}
}

// TestInvalidOrderIsDeadLetteredNotLost publishes an order the subscriber
// can never process: it is dropped to the dead-letter topic, logged there
// with its reason, and nothing stays pending or loops.
func TestInvalidOrderIsDeadLetteredNotLost(t *testing.T) {
	s := startSystem(t)
	if code, body := s.publishHTTP("pubsub", "orders", "application/json", `{"id":-1,"message":"bad"}`); code != http.StatusNoContent {
		t.Fatalf("publish answered %d %s, want 204", code, body)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		n, _ := s.redis.XLen(t.Context(), "orders-deadletter").Result()
		dlPending, _ := s.redis.XPending(t.Context(), "orders-deadletter", proc.SubscriberID).Result()
		pending, _ := s.redis.XPending(t.Context(), "orders", proc.SubscriberID).Result()
		if n == 1 && dlPending != nil && dlPending.Count == 0 && pending != nil && pending.Count == 0 && logged(s, `"Dead letter"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letter not settled: stream length %d, pending %v / %v", n, pending, dlPending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !logged(s, "id must be ≥ 0") {
		t.Fatal("dead letter logged without its reason")
	}
	if counts, _, _ := s.received.snapshot(); len(counts) != 0 {
		t.Fatalf("an invalid order was processed: %v", counts)
	}
}

func logged(s *sys, substr string) bool {
	for _, l := range s.received.logLines() {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}
