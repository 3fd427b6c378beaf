package subscriber

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dapr/go-sdk/service/common"

	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/store/storetest"
)

// benchHandler is a Handler as Run builds it, on the in-memory store and
// with its output and logs discarded, so that only the app's own work on a
// delivery is measured: decode, validate, dedupe, metrics, answer.
func benchHandler() *Handler {
	return NewHandler(HandlerConfig{
		Store: store.New(&storetest.Mem{}, "statestore", "subscriber"), Out: io.Discard,
		Log: slog.New(slog.DiscardHandler), Timeout: time.Second, PubSub: "pubsub", Topic: "orders",
		Metrics: NewMetrics(),
	})
}

func BenchmarkHandleOrder(b *testing.B) {
	h := benchHandler()
	e := &common.TopicEvent{ID: "order-1", Topic: "orders", TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	b.ReportAllocs()
	var id int64
	for b.Loop() {
		id++
		e.RawData = fmt.Appendf(e.RawData[:0], `{"id":%d,"message":"Hello from publisher - message %d"}`, id, id)
		if _, err := h.HandleOrder(b.Context(), e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHandleOrderDuplicate(b *testing.B) {
	h := benchHandler()
	e := &common.TopicEvent{ID: "order-1", Topic: "orders", RawData: []byte(`{"id":1,"message":"Hello from publisher - message 1"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.HandleOrder(b.Context(), e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBulk100 is one bulk delivery of 100 orders; divide by 100 for
// the cost per order.
func BenchmarkBulk100(b *testing.B) {
	h := benchHandler()
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
