package httpch

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"

	"dapr-pub-sub/internal/tracing"
)

// traceContext puts the W3C trace context of the request's headers (the
// traceparent daprd sends with each delivery) into the request's context,
// where the handler's span picks it up as its parent.
func traceContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("traceparent") != "" {
			r = r.WithContext(tracing.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header)))
		}
		next.ServeHTTP(w, r)
	})
}
