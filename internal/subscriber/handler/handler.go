// Package handler is what the subscriber does with a delivery, whatever
// carries it: the contract every transport (httpch, grpcch, streamch)
// delivers to, as the Dapr Go SDK's service/common is its services'.
//
// A Handler processes the orders (HandleOrder) and the dead letters
// (HandleDeadLetter) through one middleware chain (recovery, the deadline,
// Stats, Metrics, Observe, the span) and answers in the SDK's terms:
// SUCCESS, RETRY or DROP. Subscriptions are the app's two topics with
// their handlers, which a transport registers; Readiness is whether
// daprd has read them and the state store answers (/readyz). It imports
// none of the transports.
package handler

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dapr/go-sdk/service/common"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/retry"
	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/tracing"
)

// Faults are deliberate failures for the fault tests and demos; all are off
// by default and nothing else uses them.
type Faults struct {
	// FailFirstEvery makes the first delivery of every order whose id is a
	// multiple of it fail with a transient error (RETRY); 0 is off.
	FailFirstEvery int64
	// Delay is added to the processing of every order, to keep deliveries
	// in flight.
	Delay time.Duration
	// RejectFrom makes every order with an id ≥ it fail permanently (DROP),
	// standing for a bug that a later deploy fixes; 0 is off.
	RejectFrom int64
	// AlwaysFail makes every delivery of the order with this id fail with a
	// transient error (RETRY), so that the resiliency retries run out; 0 is
	// off.
	AlwaysFail int64
	// NoRecord processes every order without its record: no exactly-once,
	// a redelivery is applied again. Only for the benchmark's calibration
	// (dapr-bulk100-norecord), which prices the record by difference.
	NoRecord bool
	// NoLine applies every order without writing its "Received message"
	// line. Only for the benchmark's pricing of the line
	// (dapr-*-noline experiments).
	NoLine bool
}

// Stats counts outcomes since the process started. Safe for concurrent use.
type Stats struct {
	Processed   atomic.Int64 // effects applied
	Duplicates  atomic.Int64 // deliveries of an order already processed
	Conflicts   atomic.Int64 // deliveries of an order id already processed with other content
	Dropped     atomic.Int64 // invalid orders sent to the dead-letter topic
	Retried     atomic.Int64 // deliveries answered RETRY (store down, timeout, panic)
	DeadLetters atomic.Int64 // dead letters stored (first time)
	// The ordered mode's (Config.Lives):
	Held atomic.Int64 // events held on arrival, their predecessor not yet applied
	Late atomic.Int64 // events applied after a later event of their order had arrived
	// HeldNow and OldestHeldMillis are the events held over all orders and
	// how long the oldest has waited, at the last sweep.
	HeldNow, OldestHeldMillis atomic.Int64
}

// MarshalJSON reports the counts as a JSON object.
func (s *Stats) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]int64{
		"processed": s.Processed.Load(), "duplicates": s.Duplicates.Load(), "conflicts": s.Conflicts.Load(), "dropped": s.Dropped.Load(),
		"retried": s.Retried.Load(), "dead_letters": s.DeadLetters.Load(), "held": s.Held.Load(), "late": s.Late.Load(),
		"held_now": s.HeldNow.Load(), "oldest_held_ms": s.OldestHeldMillis.Load(),
	})
}

// Config is what a Handler needs.
type Config struct {
	Store *store.Store // processed orders and dead letters
	// Lives, when set, is the ordered mode: each order's events are
	// applied in sequence, exactly once (see handleOrdered); nil records
	// each event on its own, in any order.
	Lives   *store.Lives
	Out     io.Writer     // one "Received message: {...}" line per processed order
	Log     *slog.Logger  // everything else
	Timeout time.Duration // per event; below the component's processingTimeout
	PubSub  string        // component and topic the orders come from,
	Topic   string        // recorded with dead letters that do not say
	Faults  Faults
	Metrics *Metrics // nil for none
	// Tracer starts one span per delivery, a child of the trace context
	// daprd sends (the traceparent header of the request, else the
	// CloudEvent's traceparent); nil for none.
	Tracer trace.Tracer
	// Observe, if set, is called once per handled delivery, after the
	// answer is decided, from the delivering goroutine. It must not block
	// (the live page hands it to a buffered feed).
	Observe func(Delivery)
}

// Delivery is one handled event, as Observe sees it.
type Delivery struct {
	Time     time.Time     // when the handler finished
	EventID  string        // the CloudEvent id
	Topic    string        // the topic it came from
	Order    *order.Order  // the decoded order; nil if it did not decode or for a dead letter that is not one
	Outcome  string        // an Outcome* constant
	Reason   string        // why, for drop, retry and dead letter; empty for success and duplicate
	Duration time.Duration // time spent in the handler
}

// OutcomeDeadLetter is the outcome of a delivery on the dead-letter topic
// (Observe only; it is not a label of orders_deliveries_total).
const OutcomeDeadLetter = "dead_letter"

// Handler processes order events and dead letters. It is safe for
// concurrent use: Dapr delivers several events at once.
type Handler struct {
	Config
	Stats Stats

	mu         sync.Mutex // serialises writes to Out, and guards line
	line       []byte     // the "Received message" line being written
	failedOnce sync.Map   // order ids that Faults.FailFirstEvery already failed
	// unsure maps an event id (order.EventID) to the attempt token of a
	// record write whose call failed; an entry lives until the event's
	// next delivery here.
	unsure sync.Map
	// orders and deadLetters are handleOrder and handleDeadLetter in the
	// middleware (chain).
	orders, deadLetters common.TopicEventHandler
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	h := &Handler{Config: cfg}
	h.orders, h.deadLetters = h.chain(h.handleOrder), h.chain(h.handleDeadLetter)
	return h
}

// startSpan starts the span of one delivery of e. Its parent is the span
// context in ctx (the request's traceparent header, put there by the
// server's middleware) or, failing that, the event's own traceparent.
func (h *Handler) startSpan(ctx context.Context, e *common.TopicEvent) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = tracing.Extract(ctx, e.TraceParent, "")
	}
	ctx, span := h.Tracer.Start(ctx, e.Topic+" process", consumerSpan)
	if span.IsRecording() { // attributes cost allocations; a no-op span keeps none
		span.SetAttributes(
			attribute.String("messaging.system", "dapr"),
			attribute.String("messaging.destination.name", e.Topic),
			attribute.String("messaging.message.id", e.ID),
			attribute.String("dapr.pubsub", e.PubsubName),
		)
	}
	return ctx, span
}

var consumerSpan = trace.WithSpanKind(trace.SpanKindConsumer)

// spanTraceID is the trace id of the span in ctx, for log lines.
func spanTraceID(ctx context.Context) string {
	return trace.SpanFromContext(ctx).SpanContext().TraceID().String()
}

// endSpan ends span with the delivery's outcome.
func endSpan(span trace.Span, outcome string, err error) {
	if !span.IsRecording() {
		span.End()
		return
	}
	span.SetAttributes(attribute.String("outcome", outcome))
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
}

// Injected failures, see Faults.
var (
	errTransient = errors.New("injected transient failure (first delivery)")
	errRejected  = errors.New("injected permanent failure")
)

// HandleOrder is the common.TopicEventHandler for the orders topic. It
// follows the SDK's contract, which the SDK turns into Dapr's answer:
//
//   - nil: SUCCESS, the order's effect is applied (now or by an earlier
//     delivery: a duplicate is counted, logged and acknowledged);
//   - (false, err): DROP, the order can never be processed (order.ErrInvalid);
//     daprd sends it to the dead-letter topic;
//   - (true, err): RETRY, something transient failed (the state store, the
//     timeout, a panic); daprd retries it per the resiliency policy.
//
// The effect is recorded in the state store before the order is printed,
// with insert-if-absent, so it happens exactly once however often the
// order is delivered.
func (h *Handler) HandleOrder(ctx context.Context, e *common.TopicEvent) (retry bool, err error) {
	return h.orders(ctx, e)
}

// handleOrder is HandleOrder's step, in the middleware of chain.
func (h *Handler) handleOrder(ctx context.Context, d *delivery) (retry bool, err error) {
	e := d.event
	raw := eventData(e)
	o, err := order.Decode(raw)
	if err != nil {
		d.outcome = OutcomeDrop
		h.Log.Error("Dropping an invalid order to the dead-letter topic",
			"event_id", e.ID, "topic", e.Topic, "content_type", e.DataContentType, "err", err)
		return false, err
	}
	d.order = &o
	if len(raw) > 0 && raw[0] == '"' {
		h.Log.Warn("Order data arrived as a JSON string; publish with content type application/json",
			"event_id", e.ID, "content_type", e.DataContentType)
	}
	if n := h.Faults.RejectFrom; n > 0 && o.ID >= n {
		d.outcome = OutcomeDrop
		h.Log.Error("Dropping an order to the dead-letter topic: injected permanent failure", "event_id", e.ID, "id", o.ID)
		return false, errRejected
	}
	if err := h.injectFaults(ctx, o); err != nil {
		return h.retry(d, o, err)
	}
	if h.Faults.NoRecord {
		return h.applied(d, o)
	}
	if h.Lives != nil {
		return h.handleOrdered(ctx, d, o)
	}
	attempt := rand.Text()
	first, err := h.Store.MarkProcessed(ctx, o, e.ID, attempt)
	if err != nil {
		// The write may have landed although the call failed (the
		// connection broke after the store applied it): remember this
		// attempt, so that its redelivery completes the order instead of
		// taking it for a duplicate.
		h.unsure.Store(o.EventID(), attempt)
		return h.retry(d, o, err)
	}
	if !first {
		landed, err := h.landedUnseen(ctx, o)
		if err != nil {
			return h.retry(d, o, err)
		}
		first = landed
	}
	if !first {
		conflict, err := h.conflict(ctx, o)
		if err != nil {
			return h.retry(d, o, err)
		}
		if conflict != "" {
			d.outcome = OutcomeConflict
			h.Log.Warn("Conflicting duplicate: an order with this id was already processed with other content; the first stays, this one goes to the dead-letter topic",
				"event_id", e.ID, "id", o.ID, "difference", conflict)
			return false, fmt.Errorf("conflicting duplicate of %s: %s", o.Name(), conflict)
		}
		d.outcome = OutcomeDuplicate
		h.Log.Info("Duplicate delivery of an order already processed; acknowledged without effect", "event_id", e.ID, "id", o.ID)
		return false, nil
	}
	h.unsure.Delete(o.EventID())
	return h.applied(d, o)
}

// handleOrdered is handleOrder's ordered mode: event o is offered to its
// order's life (store.Lives), which applies it only after its predecessor
// and makes the decision durable before the answer. Its answers:
//
//   - SUCCESS with the "Received message" line of o and of every held
//     event it let through, in sequence, when o was next;
//   - SUCCESS, held: o waits in the store (not in memory) for its
//     predecessor, which applies it; or, after the gap time, the sweeper
//     keeps it as a dead letter;
//   - SUCCESS without effect for a duplicate;
//   - SUCCESS for an event not allowed after the order's state, a
//     conflicting duplicate, or one beyond the hold limit: each is kept as
//     a dead letter with its reason before the answer (the dead-letter
//     topic would lose the reason);
//   - RETRY when the store cannot be reached.
func (h *Handler) handleOrdered(ctx context.Context, d *delivery, o order.Order) (bool, error) {
	e := d.event
	applied := 0
	v, err := h.Lives.Offer(ctx, o, e.ID, func(v store.Verdict) {
		if v.Kind == store.VerdictApplied { // printed in each order's sequence
			applied += h.decided(d, v)
		}
	})
	switch {
	case err != nil:
		return h.retry(d, o, err)
	case v.Kind == store.VerdictHeld:
		d.outcome = OutcomeHeld
		h.Stats.Held.Add(1)
		h.Log.Info("Held: an earlier event of this order has not been applied yet", "event_id", e.ID, "id", o.ID, "seq", o.Sequence(), "type", o.Kind())
	case v.Kind == store.VerdictDuplicate:
		d.outcome = OutcomeDuplicate
		h.Log.Info("Duplicate delivery of an order event already applied or held; acknowledged without effect", "event_id", e.ID, "id", o.ID, "seq", o.Sequence())
	case v.Kind == store.VerdictConflict || v.Kind == store.VerdictBeyond:
		d.outcome, d.reason = OutcomeConflict, v.Reason
		if v.Kind == store.VerdictBeyond {
			d.outcome = OutcomeDrop
			h.Metrics.beyond()
		}
		h.keptDeadLetter(e.ID, v.Reason)
	case v.Decided[0].Step.Rejected != "":
		d.outcome, d.reason = OutcomeDrop, v.Decided[0].Step.Rejected
	default:
		d.outcome = OutcomeSuccess
	}
	if d.outcome == OutcomeSuccess {
		applied-- // the delivery itself is counted by its outcome (counted)
	}
	h.Stats.Processed.Add(int64(applied))
	return false, nil
}

// decided does the effects of the events v decided, in sequence: the
// "Received message" line of each one applied, the dead letter's log line
// of each one rejected. It returns how many were applied.
func (h *Handler) decided(d *delivery, v store.Verdict) (applied int) {
	for _, x := range v.Decided {
		if x.Step.Late {
			h.Stats.Late.Add(1)
			h.Metrics.late()
		}
		if x.Step.Rejected != "" {
			h.keptDeadLetter(x.EventID, x.Step.Rejected)
			continue
		}
		_, _ = h.applied(d, x.Event) // SUCCESS, nil: its line
		applied++
	}
	return applied
}

// keptDeadLetter logs and counts a dead letter the ordered mode kept.
func (h *Handler) keptDeadLetter(eventID, reason string) {
	h.Stats.DeadLetters.Add(1)
	if h.Metrics != nil {
		h.Metrics.deadLetters.Inc()
	}
	h.Log.Error("Dead letter", "event_id", eventID, "reason", reason)
}

// applied is SUCCESS for order o, recorded (or Faults.NoRecord): its
// effect, the "Received message" line.
func (h *Handler) applied(d *delivery, o order.Order) (bool, error) {
	d.outcome = OutcomeSuccess
	h.Metrics.observeEndToEnd(o.SentAt, time.Now())
	if h.Faults.NoLine {
		return false, nil
	}
	h.mu.Lock()
	h.line = append(o.AppendSeed(append(h.line[:0], "Received message: "...)), '\n')
	_, _ = h.Out.Write(h.line) // stdout: nothing to do if it fails
	h.mu.Unlock()
	return false, nil
}

// landedUnseen reports whether event o's record was written by an attempt
// of this process whose call failed: the write landed, and the event's
// effect has not run yet.
func (h *Handler) landedUnseen(ctx context.Context, o order.Order) (bool, error) {
	id := o.EventID()
	attempt, ok := h.unsure.Load(id)
	if !ok {
		return false, nil
	}
	rec, found, err := h.Store.EventRecord(ctx, o)
	if err != nil {
		return false, err
	}
	if found && rec.Attempt == attempt {
		h.Log.Warn("An earlier attempt's record write landed although its call failed; completing the order now", "id", o.ID, "seq", o.Sequence())
		return true, nil
	}
	h.unsure.Delete(id) // written by someone else: a plain duplicate
	return false, nil
}

// conflict says how o differs from the processed order with its id, ""
// when it does not (or was never processed); an error when the record
// cannot be read.
func (h *Handler) conflict(ctx context.Context, o order.Order) (string, error) {
	rec, found, err := h.Store.EventRecord(ctx, o)
	if err != nil || !found {
		return "", err
	}
	return rec.Order.Conflict(o), nil
}

// retry is RETRY for order o: a transient failure, err.
func (h *Handler) retry(d *delivery, o order.Order, err error) (bool, error) {
	d.outcome = OutcomeRetry
	h.Log.Warn("Order processing failed; it will be retried", "event_id", d.event.ID, "id", o.ID, "err", err)
	return true, err
}

func (h *Handler) injectFaults(ctx context.Context, o order.Order) error {
	if id := h.Faults.AlwaysFail; id > 0 && o.ID == id {
		return errTransient
	}
	if n := h.Faults.FailFirstEvery; n > 0 && o.ID%n == 0 {
		if _, seen := h.failedOnce.LoadOrStore(o.ID, true); !seen {
			return errTransient
		}
	}
	if d := h.Faults.Delay; d > 0 {
		return retry.Sleep(ctx, d)
	}
	return nil
}

// HandleDeadLetter is the handler for the dead-letter topic, to which the
// app subscribes with rawPayload, so that daprd hands over any message
// as it is, even one that is not a CloudEvent (which daprd itself could not
// decode, and would otherwise retry forever). It keeps each dead letter in
// the state store, once per original event id, with the reason it could
// not be processed, and logs it. It answers RETRY only when the store
// cannot be reached, so a dead letter is neither lost nor looped.
func (h *Handler) HandleDeadLetter(ctx context.Context, e *common.TopicEvent) (retry bool, err error) {
	return h.deadLetters(ctx, e)
}

// handleDeadLetter is HandleDeadLetter's step, in the middleware of chain.
func (h *Handler) handleDeadLetter(ctx context.Context, d *delivery) (retry bool, err error) {
	e := d.event
	dl := h.deadLetter(eventData(e))
	d.eventID = dl.EventID
	if o, err := order.Decode(dl.Data); err == nil {
		d.order = &o
		if c, err := h.conflict(ctx, o); err == nil && c != "" {
			dl.Reason = fmt.Sprintf("conflicting duplicate of %s: %s (the first one was processed and stays)", o.Name(), c)
		}
	}
	first, err := h.Store.AddDeadLetter(ctx, dl)
	if err != nil {
		d.outcome = OutcomeRetry
		h.Log.Warn("Could not store a dead letter; it will be retried", "event_id", e.ID, "err", err)
		return true, err
	}
	if first {
		h.Stats.DeadLetters.Add(1)
		if h.Metrics != nil {
			h.Metrics.deadLetters.Inc()
		}
	}
	h.Log.Error("Dead letter", "event_id", dl.EventID, "topic", dl.Topic, "data", string(dl.Data), "reason", dl.Reason, "first_time", first)
	d.outcome, d.reason = OutcomeDeadLetter, dl.Reason
	return false, nil
}

// deadLetter unwraps the original message: normally the CloudEvent that was
// published to the orders topic; anything else is kept as raw bytes under
// an id derived from its content, so its redeliveries are stored once.
func (h *Handler) deadLetter(msg []byte) store.DeadLetter {
	dl := store.DeadLetter{PubSub: h.PubSub, Topic: h.Topic, ReceivedAt: time.Now().UTC()}
	var ce CloudEvent
	if err := json.Unmarshal(msg, &ce); err != nil || ce.ID == "" {
		sum := sha256.Sum256(msg)
		dl.EventID = "raw-" + hex.EncodeToString(sum[:8])
		dl.ContentType = "application/octet-stream"
		dl.Data = msg
		dl.Reason = "not a CloudEvent, so Dapr could not deliver it"
		return dl
	}
	dl.EventID, dl.ContentType = ce.ID, ce.DataContentType
	if ce.Topic != "" {
		dl.Topic = ce.Topic
	}
	if ce.PubsubName != "" {
		dl.PubSub = ce.PubsubName
	}
	data := []byte(ce.Data)
	if ce.DataBase64 != "" {
		if b, err := base64.StdEncoding.DecodeString(ce.DataBase64); err == nil {
			data = b
		}
	}
	dl.Reason = "the subscriber dropped it"
	if _, err := order.Decode(data); err != nil {
		dl.Reason = err.Error()
	}
	dl.Data = asPublished(data, ce.DataContentType)
	return dl
}

// eventData returns the event's data as the SDK parsed it: the JSON value
// for JSON data (an object, or a string holding one), the decoded bytes for
// data_base64. A caller that only set Data gets it re-encoded.
func eventData(e *common.TopicEvent) []byte {
	if len(e.RawData) > 0 {
		return e.RawData
	}
	switch d := e.Data.(type) {
	case nil:
		return nil
	case []byte:
		return d
	default:
		b, err := json.Marshal(d)
		if err != nil {
			return nil
		}
		return b
	}
}

// asPublished is the data as it was published, for a replay: Dapr carries
// text that is not declared JSON as a JSON string.
func asPublished(raw []byte, contentType string) []byte {
	if len(raw) > 0 && raw[0] == '"' && !strings.Contains(contentType, "json") {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return []byte(s)
		}
	}
	return raw
}

var _ common.TopicEventHandler = (*Handler)(nil).HandleOrder
