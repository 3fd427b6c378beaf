// Package tracing sets up OpenTelemetry tracing for the apps: W3C trace
// context propagation (what Dapr speaks) and spans, with an exporter only
// when one is configured.
package tracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/metadata"
)

// Propagator is the W3C trace context propagator (traceparent,
// tracestate), the format Dapr uses. Pass it explicitly: OTel's global
// propagator does nothing until it is set.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Provider is a tracer provider and the function that flushes and stops it.
type Provider struct {
	trace.TracerProvider
	// Exporting is true when spans leave the process (an OTLP endpoint is
	// configured); without one, spans still carry the trace context into
	// logs, and nothing is sent anywhere.
	Exporting bool
	Shutdown  func(context.Context) error
}

// Setup returns the tracer provider of service. Spans are exported over
// OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (the exporter reads the rest of
// the standard OTEL_EXPORTER_OTLP_* variables itself); otherwise spans are
// no-ops that only carry Dapr's trace context on to the logs. Sampling follows the parent (Dapr's sampling decision),
// and samples root spans. Setup also sets OTel's global propagator and
// provider, for libraries that use them.
func Setup(ctx context.Context, service string, getenv func(string) string) (*Provider, error) {
	res := resource.NewSchemaless(attribute.String("service.name", service))
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	}
	exporting := getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	if exporting {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("OTLP trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	otel.SetTextMapPropagator(Propagator)
	if !exporting {
		// Spans that go nowhere are pure cost (a few µs and allocations per
		// delivery): a no-op span still carries its parent's trace context,
		// which is what the logs show.
		tp := noop.NewTracerProvider()
		otel.SetTracerProvider(tp)
		return &Provider{TracerProvider: tp, Shutdown: func(context.Context) error { return nil }}, nil
	}
	tp := sdktrace.NewTracerProvider(opts...)
	otel.SetTracerProvider(tp)
	return &Provider{TracerProvider: tp, Exporting: true, Shutdown: tp.Shutdown}, nil
}

// Extract returns ctx carrying the remote span context of traceparent (and
// tracestate), or ctx as it is when traceparent is empty or malformed.
func Extract(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return Propagator.Extract(ctx, &w3cCarrier{traceparent, tracestate})
}

// Outgoing returns ctx with the trace context of the span in it, when it
// has a valid one, added to its outgoing gRPC metadata as traceparent (and
// tracestate): daprd's gRPC API reads them, so the spans it makes of a
// call are children of that span, in its trace. Without a span, ctx as it
// is.
func Outgoing(ctx context.Context) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ctx
	}
	var c w3cCarrier
	Propagator.Inject(ctx, &c)
	if c.tracestate == "" {
		return metadata.AppendToOutgoingContext(ctx, "traceparent", c.traceparent)
	}
	return metadata.AppendToOutgoingContext(ctx, "traceparent", c.traceparent, "tracestate", c.tracestate)
}

// w3cCarrier carries the two W3C trace context fields without the map a
// propagation.MapCarrier would allocate for each delivery.
type w3cCarrier struct{ traceparent, tracestate string }

func (c w3cCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.traceparent
	case "tracestate":
		return c.tracestate
	}
	return ""
}

func (c *w3cCarrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.traceparent = value
	case "tracestate":
		c.tracestate = value
	}
}

func (w3cCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }
