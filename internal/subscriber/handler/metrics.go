package handler

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Delivery outcomes, the values of the "outcome" label.
const (
	OutcomeSuccess   = "success"   // the order's effect was applied
	OutcomeDuplicate = "duplicate" // already applied: acknowledged without effect
	OutcomeDrop      = "drop"      // never processable: to the dead-letter topic
	OutcomeRetry     = "retry"     // transient failure: Dapr retries it
	// OutcomeConflict is a delivery of an order id already processed with
	// other content: the first write stays, this one goes to the
	// dead-letter topic.
	OutcomeConflict = "conflict"
	// OutcomeHeld is the ordered mode's delivery of an event whose
	// predecessor has not been applied: kept in the store until it is.
	OutcomeHeld = "held"
)

// Metrics are the subscriber's Prometheus metrics, in a registry of their
// own (no global state), served at /metrics.
type Metrics struct {
	Registry       *prometheus.Registry
	deliveries     *prometheus.CounterVec
	handlerSeconds *prometheus.HistogramVec
	endToEnd       prometheus.Histogram
	batchEntries   prometheus.Histogram
	deadLetters    prometheus.Counter
	// The ordered mode's.
	appliedLate prometheus.Counter
	held        prometheus.Gauge
	oldestHeld  prometheus.Gauge
	gapsExpired prometheus.Counter
	beyondLimit prometheus.Counter
	routed      *prometheus.CounterVec
}

// NewMetrics registers the subscriber's metrics and the Go runtime's.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_deliveries_total",
			Help: "Order deliveries by outcome: success, duplicate, conflict, drop, retry; held in the ordered mode.",
		}, []string{"outcome"}),
		handlerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orders_handler_seconds",
			Help:    "Time the handler spent on one delivery, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14), // 0.5 ms … 4 s
		}, []string{"outcome"}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orders_end_to_end_seconds",
			Help:    "From the order's sent_at (set by the publisher) to its effect, for orders that carry it. Same-host clocks assumed.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18), // 0.5 ms … 65 s
		}),
		batchEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orders_bulk_batch_entries",
			Help:    "Entries per bulk delivery (throughput mode only).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12), // 1 … 2048
		}),
		deadLetters: counter("orders_dead_letters_total", "Dead letters stored for the first time."),
	}
	m.appliedLate = counter("orders_applied_out_of_arrival_order_total", "Ordered mode: events applied after a later event of their order had arrived (held, or filling a gap).")
	m.held = gauge("orders_held_events", "Ordered mode: events held in the store for their predecessor, over all orders, at the last sweep.")
	m.oldestHeld = gauge("orders_oldest_held_seconds", "Ordered mode: how long the oldest held event had waited at the last sweep; 0 for none.")
	m.gapsExpired = counter("orders_gap_dead_letters_total", "Ordered mode: held events kept as dead letters because their gap did not fill within the gap time.")
	m.beyondLimit = counter("orders_beyond_hold_limit_total", "Ordered mode: events further ahead of the event their order waits for than the hold limit: dead letters at once.")
	m.routed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orders_routed_deliveries_total",
		Help: "Ordered mode: deliveries by the route daprd's routing rules chose (each event type after the first its own)."}, []string{"route"})
	m.Registry.MustRegister(m.deliveries, m.handlerSeconds, m.endToEnd, m.batchEntries, m.deadLetters,
		m.appliedLate, m.held, m.oldestHeld, m.gapsExpired, m.beyondLimit, m.routed,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, o := range []string{OutcomeSuccess, OutcomeDuplicate, OutcomeDrop, OutcomeRetry} {
		m.deliveries.WithLabelValues(o) // present at 0 from the start
	}
	return m
}

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
}

func gauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
}

func (m *Metrics) observe(outcome string, since time.Time) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(outcome).Inc()
	m.handlerSeconds.WithLabelValues(outcome).Observe(time.Since(since).Seconds())
}

// observeEndToEnd records the time from sentAt to now; a zero sentAt (an
// order without the timestamp) is not recorded, and neither is a negative
// time, which only clock skew between hosts can give.
func (m *Metrics) observeEndToEnd(sentAt, now time.Time) {
	if m == nil || sentAt.IsZero() {
		return
	}
	if d := now.Sub(sentAt); d >= 0 {
		m.endToEnd.Observe(d.Seconds())
	}
}

// ObserveBatch records the size of one bulk delivery (the throughput
// mode's), in orders_bulk_batch_entries. A nil m records nothing.
func (m *Metrics) ObserveBatch(entries int) {
	if m != nil {
		m.batchEntries.Observe(float64(entries))
	}
}

// beyond counts an event beyond the hold limit. A nil m counts nothing.
func (m *Metrics) beyond() {
	if m != nil {
		m.beyondLimit.Inc()
	}
}

// late counts an event applied out of arrival order. A nil m counts nothing.
func (m *Metrics) late() {
	if m != nil {
		m.appliedLate.Inc()
	}
}

// ObserveSweep records what a sweep of the held events found: held events,
// the oldest one's wait, and how many it dead-lettered. A nil m records
// nothing.
func (m *Metrics) ObserveSweep(held int, oldest time.Duration, expired int) {
	if m == nil {
		return
	}
	m.held.Set(float64(held))
	m.oldestHeld.Set(oldest.Seconds())
	m.gapsExpired.Add(float64(expired))
}

// routedTo counts a delivery daprd routed to route. A nil m counts nothing.
func (m *Metrics) routedTo(route string) {
	if m != nil {
		m.routed.WithLabelValues(route).Inc()
	}
}
