package tracing

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"
)

func TestSetupExportsOnlyWhenAnEndpointIsSet(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := map[string]struct {
		env  map[string]string
		want bool
	}{
		"off by default": {env: map[string]string{}},
		"endpoint":       {env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, want: true},
		"traces only":    {env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := Setup(t.Context(), "test", func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			defer p.Shutdown(t.Context()) //nolint:errcheck // nothing was exported
			if p.Exporting != tc.want {
				t.Fatalf("Exporting = %v, want %v", p.Exporting, tc.want)
			}
			// Either way a delivery's span is in the trace Dapr sent.
			_, span := p.Tracer("t").Start(Extract(t.Context(), parent, ""), "x")
			defer span.End()
			if got := span.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Fatalf("trace id = %s, want the parent's", got)
			}
		})
	}
}

// TestOutgoingCarriesTheSpansContext: a span's trace context goes out as
// traceparent and tracestate; without a valid span nothing is added.
func TestOutgoingCarriesTheSpansContext(t *testing.T) {
	ctx := Extract(t.Context(), "00-5d2a3c1e0f9b4a7c8e6d5f4a3b2c1d0e-1a2b3c4d5e6f7a8b-01", "k=v")
	md, _ := metadata.FromOutgoingContext(Outgoing(ctx))
	if got := md.Get("traceparent"); len(got) != 1 || got[0] != "00-5d2a3c1e0f9b4a7c8e6d5f4a3b2c1d0e-1a2b3c4d5e6f7a8b-01" {
		t.Errorf("traceparent = %q", got)
	}
	if got := md.Get("tracestate"); len(got) != 1 || got[0] != "k=v" {
		t.Errorf("tracestate = %q", got)
	}
	if _, ok := metadata.FromOutgoingContext(Outgoing(t.Context())); ok {
		t.Error("metadata added without a span")
	}
}

// BenchmarkOutgoing prices the trace context on each sidecar call (go
// test -bench Outgoing ./internal/tracing).
func BenchmarkOutgoing(b *testing.B) {
	ctx := Extract(context.Background(), "00-5d2a3c1e0f9b4a7c8e6d5f4a3b2c1d0e-1a2b3c4d5e6f7a8b-01", "")
	b.ReportAllocs()
	for b.Loop() {
		_ = Outgoing(ctx)
	}
}
