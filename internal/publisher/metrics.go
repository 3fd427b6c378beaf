package publisher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the publisher's Prometheus metrics, in a registry of their
// own (with the Go runtime and process collectors). Safe for concurrent use.
type Metrics struct {
	reg       *prometheus.Registry
	published prometheus.Counter
	failures  prometheus.Counter
	retries   prometheus.Counter
	seconds   prometheus.Histogram
}

// NewMetrics returns the publisher's metrics, all at zero.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_published_total",
			Help: "Orders the sidecar acknowledged.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_publish_failures_total",
			Help: "Orders given up on: refused, or still failing after -attempts tries.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_publish_retries_total",
			Help: "Orders sent again after a failed try (one per order and retry).",
		}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orders_publish_seconds",
			Help:    "Time of one publish, retries included: one order, or one batch of -bulk orders.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	m.reg.MustRegister(m.published, m.failures, m.retries, m.seconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// ServeMetrics listens on address and serves m at /metrics until stop is
// called; it returns the address listened on (useful with port 0). The
// listener is open when it returns, so a scrape right after succeeds; a busy
// port is an error.
func ServeMetrics(address string, m *Metrics, log *slog.Logger) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return "", nil, fmt.Errorf("metrics address %s: %w", address, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("Metrics server stopped", "err", err)
		}
	}()
	addr = ln.Addr().String()
	log.Info("Serving metrics", "url", "http://"+addr+"/metrics")
	return addr, func() {
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
		<-done
	}, nil
}
