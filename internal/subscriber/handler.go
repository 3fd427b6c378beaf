// Package subscriber is the order subscriber: an HTTP service that Dapr
// calls with each order event, built on the Dapr Go SDK's service/http.
package subscriber

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/dapr/go-sdk/service/common"

	"dapr-pub-sub/internal/order"
)

// Handler processes order events. It is safe for concurrent use: Dapr
// delivers several events at once.
type Handler struct {
	out io.Writer // the "Received message" lines
	log *slog.Logger

	mu sync.Mutex // serialises writes to out
}

// NewHandler returns a Handler that prints one line per order to out, in the
// seed's format, and logs everything else to log.
func NewHandler(out io.Writer, log *slog.Logger) *Handler {
	return &Handler{out: out, log: log}
}

// HandleOrder is the common.TopicEventHandler for the orders topic. It
// follows the SDK's contract, which the SDK turns into Dapr's answer:
// nil → SUCCESS (done); (false, err) → DROP (to the dead-letter topic);
// (true, err) → RETRY (redelivered later). An order that can never be
// processed (order.ErrInvalid) is dropped, never retried, so it cannot loop.
func (h *Handler) HandleOrder(ctx context.Context, e *common.TopicEvent) (retry bool, err error) {
	raw := eventData(e)
	o, err := order.Decode(raw)
	if err != nil {
		h.log.Error("Dropping undecodable order to the dead-letter topic",
			"event_id", e.ID, "topic", e.Topic, "content_type", e.DataContentType, "err", err)
		return false, err
	}
	if len(raw) > 0 && raw[0] == '"' {
		h.log.Warn("Order data arrived as a JSON string; publish with content type application/json",
			"event_id", e.ID, "content_type", e.DataContentType)
	}
	h.mu.Lock()
	_, err = fmt.Fprintf(h.out, "Received message: %s\n", o)
	h.mu.Unlock()
	if err != nil {
		return true, fmt.Errorf("write received order %d: %w", o.ID, err)
	}
	h.log.Debug("Processed order", "event_id", e.ID, "topic", e.Topic, "id", o.ID, "traceparent", e.TraceParent)
	return false, nil
}

// HandleDeadLetter is the handler for the dead-letter topic: it logs each
// dead letter with what can be decoded of it and acknowledges it, so it
// stays in the dead-letter stream and is not redelivered in a loop.
func (h *Handler) HandleDeadLetter(ctx context.Context, e *common.TopicEvent) (retry bool, err error) {
	raw := eventData(e)
	reason := "decoded fine; it was dropped by the handler"
	if _, err := order.Decode(raw); err != nil {
		reason = err.Error()
	}
	h.log.Error("Dead letter", "event_id", e.ID, "topic", e.Topic, "data", string(raw), "reason", reason)
	return false, nil
}

// eventData returns the event's data as bytes: the SDK fills RawData for
// HTTP deliveries; a caller that only set Data gets it re-encoded.
func eventData(e *common.TopicEvent) []byte {
	if len(e.RawData) > 0 {
		return e.RawData
	}
	switch d := e.Data.(type) {
	case nil:
		return nil
	case []byte:
		return d
	case string:
		b, _ := json.Marshal(d)
		return b
	default:
		b, err := json.Marshal(d)
		if err != nil {
			return nil
		}
		return b
	}
}

var _ common.TopicEventHandler = (*Handler)(nil).HandleOrder

// errNotServing is returned by Run when the server stopped on its own.
var errNotServing = errors.New("subscriber HTTP server stopped")
