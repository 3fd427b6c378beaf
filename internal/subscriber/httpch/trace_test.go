package httpch

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/dapr/go-sdk/service/common"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/handler/handlertest"
)

const (
	eventParent  = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	headerParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)

func TestDeliverySpanIsAChildOfDaprsTraceContext(t *testing.T) {
	tests := map[string]struct {
		header    string // traceparent header of the request, "" for none
		wantTrace string
		wantSpan  string
	}{
		"from the event":  {wantTrace: "4bf92f3577b34da6a3ce929d0e0e4736", wantSpan: "00f067aa0ba902b7"},
		"header wins":     {header: headerParent, wantTrace: "0af7651916cd43dd8448eb211c80319c", wantSpan: "b7ad6b7169203331"},
		"malformed event": {wantTrace: ""}, // a root span of its own
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			f := handlertest.New(handler.Faults{})
			f.H.Tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
			e := &common.TopicEvent{ID: "order-1", Topic: "orders", TraceParent: eventParent, RawData: []byte(`{"id":1,"message":"hi"}`)}
			if name == "malformed event" {
				e.TraceParent = "00-nonsense"
			}
			// Through the middleware, as daprd's request would go.
			srv := traceContext(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, err := f.H.HandleOrder(r.Context(), e); err != nil {
					t.Errorf("HandleOrder: %v", err)
				}
			}))
			req := httptest.NewRequest(http.MethodPost, handler.OrdersRoute, nil)
			if tc.header != "" {
				req.Header.Set("traceparent", tc.header)
			}
			srv.ServeHTTP(httptest.NewRecorder(), req)

			spans := rec.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans ended, want 1", len(spans))
			}
			s := spans[0]
			if s.SpanKind() != trace.SpanKindConsumer || s.Name() != "orders process" {
				t.Fatalf("span %q kind %v", s.Name(), s.SpanKind())
			}
			parent := s.Parent()
			if tc.wantTrace == "" {
				if parent.IsValid() || !s.SpanContext().IsValid() {
					t.Fatalf("want a new root span, got parent %v", parent)
				}
				return
			}
			if got := s.SpanContext().TraceID().String(); got != tc.wantTrace {
				t.Fatalf("trace id = %s, want %s", got, tc.wantTrace)
			}
			if got := parent.SpanID().String(); got != tc.wantSpan || !parent.IsRemote() {
				t.Fatalf("parent span = %s (remote %v), want remote %s", got, parent.IsRemote(), tc.wantSpan)
			}
			if !containsAttr(s, "outcome", handler.OutcomeSuccess) || !containsAttr(s, "messaging.message.id", "order-1") {
				t.Fatalf("attributes %v lack the outcome or the event id", s.Attributes())
			}
		})
	}
}

func containsAttr(s sdktrace.ReadOnlySpan, key, value string) bool {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key && kv.Value.AsString() == value {
			return true
		}
	}
	return false
}
