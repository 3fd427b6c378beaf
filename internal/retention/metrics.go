package retention

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the keeper's Prometheus metrics: the backlog of every stream
// and group, and what the keeper did. In a registry of the caller's.
type Metrics struct {
	length, bytes, windowExceeded             *prometheus.GaugeVec
	lag, pending, oldestPending, redeliveries *prometheus.GaugeVec
	trimmed                                   *prometheus.CounterVec
	removed                                   *prometheus.CounterVec
	passErrors                                prometheus.Counter
	lastPass                                  prometheus.Gauge
}

// NewMetrics registers the metrics in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	stream := []string{"stream"}
	group := []string{"stream", "group"}
	m := &Metrics{
		length:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "redis_stream_length", Help: "Entries in the stream (XLEN)."}, stream),
		bytes:          prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "redis_stream_memory_bytes", Help: "Memory Redis uses for the stream (MEMORY USAGE)."}, stream),
		windowExceeded: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "retention_window_exceeded", Help: "1 when a group still needs an entry older than the retention window: its order's record may expire before it is redelivered."}, stream),
		lag:            prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "redis_stream_group_lag", Help: "Entries the group has not read yet (XINFO GROUPS lag)."}, group),
		pending:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "redis_stream_group_pending", Help: "Entries read but not acknowledged (XPENDING)."}, group),
		oldestPending:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "redis_stream_group_oldest_pending_age_seconds", Help: "Age of the oldest pending entry, from its id (publish time)."}, group),
		redeliveries:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "redis_stream_group_pending_redeliveries", Help: "Extra deliveries of the (up to 1,000) oldest pending entries, from XPENDING's delivery counters."}, group),
		trimmed:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "retention_trimmed_entries_total", Help: "Entries trimmed from the stream."}, stream),
		removed:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "retention_consumers_removed_total", Help: "Idle consumers with nothing pending removed from their group."}, group),
		passErrors:     prometheus.NewCounter(prometheus.CounterOpts{Name: "retention_pass_errors_total", Help: "Retention passes that failed."}),
		lastPass:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "retention_last_pass_timestamp_seconds", Help: "When the last retention pass ended."}),
	}
	reg.MustRegister(m.length, m.bytes, m.windowExceeded, m.lag, m.pending, m.oldestPending, m.redeliveries, m.trimmed, m.removed, m.passErrors, m.lastPass)
	return m
}

// observe records one stream's report; a nil m does nothing.
func (m *Metrics) observe(r StreamReport) {
	if m == nil {
		return
	}
	m.length.WithLabelValues(r.Stream).Set(float64(r.Length))
	exceeded := 0.0
	if r.WindowExceeded {
		exceeded = 1
	}
	m.windowExceeded.WithLabelValues(r.Stream).Set(exceeded)
	m.bytes.WithLabelValues(r.Stream).Set(float64(r.Bytes))
	m.trimmed.WithLabelValues(r.Stream).Add(float64(r.Trimmed))
	for _, g := range r.Groups {
		m.lag.WithLabelValues(r.Stream, g.Name).Set(float64(g.Lag))
		m.pending.WithLabelValues(r.Stream, g.Name).Set(float64(g.Pending))
		m.oldestPending.WithLabelValues(r.Stream, g.Name).Set(g.OldestPending.Seconds())
		m.redeliveries.WithLabelValues(r.Stream, g.Name).Set(float64(g.Redeliveries))
	}
	for _, c := range r.Removed {
		m.removed.WithLabelValues(r.Stream, c.Group).Inc()
	}
}

// passFailed counts a failed pass; a nil m does nothing.
func (m *Metrics) passFailed() {
	if m != nil {
		m.passErrors.Inc()
	}
}

// passDone stamps the end of a pass; a nil m does nothing.
func (m *Metrics) passDone() {
	if m != nil {
		m.lastPass.SetToCurrentTime()
	}
}
