package handler

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/dapr/go-sdk/service/common"

	"dapr-pub-sub/internal/order"
)

// delivery is one event on its way through a handler's middleware. The
// step at the core says what came of it (outcome, and the order when it
// decoded); the middleware around it read that once the step returns.
type delivery struct {
	event   *common.TopicEvent
	start   time.Time
	outcome string       // an Outcome* constant, set by the step
	order   *order.Order // the decoded order, if it decoded
	// eventID and reason, when set, are what Observe reports instead of
	// the event's id and the error: a dead letter's original event and
	// why it is one.
	eventID, reason string
}

// step handles one delivery under the Go SDK's contract — nil: SUCCESS;
// (true, err): RETRY; (false, err): DROP — and sets d.outcome.
type step func(ctx context.Context, d *delivery) (retry bool, err error)

// middleware wraps a step, as Watermill's HandlerMiddleware wraps a
// HandlerFunc: every concern that is the same for every handler (recovery,
// the deadline, the span, stats, metrics, Observe) is one, written once.
type middleware func(step) step

// chain wraps s in the handler's middleware and returns it as the SDK's
// handler type. Outermost first: the span (which sees the final outcome),
// Observe and the debug line, metrics, stats, the deadline, and recovery
// right around the step, so that a panic is an outcome like any other.
func (h *Handler) chain(s step) common.TopicEventHandler {
	for _, m := range []middleware{h.recovered, h.bounded, h.counted, h.measured, h.observed, h.traced} {
		s = m(s)
	}
	return func(ctx context.Context, e *common.TopicEvent) (bool, error) {
		return s(ctx, &delivery{event: e, start: time.Now()})
	}
}

// Drop answers DROP for e without processing it, through the same
// middleware as HandleOrder (counted as dropped, measured, observed,
// traced), and returns (false, cause). It is for a delivery that a
// transport could not turn into an event at all, such as a bulk entry
// that is not a CloudEvent; the caller logs why. daprd sends it to the
// dead-letter topic.
func (h *Handler) Drop(ctx context.Context, e *common.TopicEvent, cause error) (retry bool, err error) {
	return h.chain(func(_ context.Context, d *delivery) (bool, error) {
		d.outcome = OutcomeDrop
		return false, cause
	})(ctx, e)
}

// recovered turns a panic in the step into RETRY: daprd delivers the event
// again, and the process lives on.
func (h *Handler) recovered(next step) step {
	return func(ctx context.Context, d *delivery) (retry bool, err error) {
		defer func() {
			if p := recover(); p != nil {
				retry, err, d.outcome = true, fmt.Errorf("panic: %v", p), OutcomeRetry
				h.Log.Error("Recovered from a panic while handling a delivery; it will be retried", "event_id", d.event.ID, "topic", d.event.Topic, "panic", p)
			}
		}()
		return next(ctx, d)
	}
}

// bounded gives the step the handler's Timeout, below the component's
// processingTimeout, so that a stuck store call ends in RETRY rather than
// in a redelivery while the first one still runs.
func (h *Handler) bounded(next step) step {
	return func(ctx context.Context, d *delivery) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, h.Timeout)
		defer cancel()
		return next(ctx, d)
	}
}

// counted adds each delivery to Stats by its outcome.
func (h *Handler) counted(next step) step {
	return func(ctx context.Context, d *delivery) (bool, error) {
		retry, err := next(ctx, d)
		switch d.outcome {
		case OutcomeSuccess:
			h.Stats.Processed.Add(1)
		case OutcomeDuplicate:
			h.Stats.Duplicates.Add(1)
		case OutcomeConflict:
			h.Stats.Conflicts.Add(1)
		case OutcomeDrop:
			h.Stats.Dropped.Add(1)
		case OutcomeRetry:
			h.Stats.Retried.Add(1)
		}
		return retry, err
	}
}

// measured records orders_deliveries_total and orders_handler_seconds by
// outcome. A dead letter kept is not an order delivery (it is counted by
// orders_dead_letters_total); a dead letter answered RETRY is.
func (h *Handler) measured(next step) step {
	return func(ctx context.Context, d *delivery) (bool, error) {
		retry, err := next(ctx, d)
		if d.outcome != OutcomeDeadLetter {
			h.Metrics.observe(d.outcome, d.start)
		}
		return retry, err
	}
}

// observed hands each delivery to Observe (the live page), and writes the
// debug line.
func (h *Handler) observed(next step) step {
	return func(ctx context.Context, d *delivery) (bool, error) {
		retry, err := next(ctx, d)
		if h.Observe != nil {
			o := Delivery{EventID: d.event.ID, Topic: d.event.Topic, Order: d.order, Outcome: d.outcome, Reason: d.reason}
			if d.eventID != "" {
				o.EventID = d.eventID
			}
			if o.Reason == "" && err != nil {
				o.Reason = err.Error()
			}
			o.Time = time.Now()
			o.Duration = o.Time.Sub(d.start)
			h.Observe(o)
		}
		if h.Log.Enabled(ctx, slog.LevelDebug) { // the arguments cost allocations even when not logged
			h.Log.Debug("Delivery", "event_id", d.event.ID, "topic", d.event.Topic, "outcome", d.outcome, "traceparent", d.event.TraceParent,
				"trace_id", spanTraceID(ctx), "duration", time.Since(d.start).String())
		}
		return retry, err
	}
}

// traced runs the step in a span of its own (startSpan), ended with the
// outcome.
func (h *Handler) traced(next step) step {
	return func(ctx context.Context, d *delivery) (bool, error) {
		ctx, span := h.startSpan(ctx, d.event)
		retry, err := next(ctx, d)
		endSpan(span, d.outcome, err)
		return retry, err
	}
}
