package handler_test

import (
	"fmt"
	"testing"

	"github.com/dapr/go-sdk/service/common"

	"dapr-pub-sub/internal/subscriber/handler/handlertest"
)

func BenchmarkHandleOrder(b *testing.B) {
	h := handlertest.Quiet()
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
	h := handlertest.Quiet()
	e := &common.TopicEvent{ID: "order-1", Topic: "orders", RawData: []byte(`{"id":1,"message":"Hello from publisher - message 1"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.HandleOrder(b.Context(), e); err != nil {
			b.Fatal(err)
		}
	}
}
