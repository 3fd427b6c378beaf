package httpch

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dapr/go-sdk/service/common"
	"go.opentelemetry.io/otel/trace"

	"dapr-pub-sub/internal/subscriber/handler"
)

// BulkOrdersRoute is where daprd posts batches of order events when bulk
// subscribe is on (Bulk.MaxMessages > 0).
const BulkOrdersRoute = "/orders-bulk"

// Bulk is the bulk-subscribe setting: the high-throughput mode. daprd then
// hands the app up to MaxMessages events in one request, waiting at most
// MaxAwait for a batch to fill, and the app answers a status per event.
//
// The trade-off: fewer, larger calls cost far less CPU per message in both
// daprd and the app, and a message may wait up to MaxAwait for its batch.
// On Redis the component's concurrency must be at least 2 × MaxMessages
// (see components/throughput), or each worker blocks until its batch
// flushes and delivery crawls.
type Bulk struct {
	MaxMessages int           // events per batch; 0 turns bulk subscribe off
	MaxAwait    time.Duration // longest a batch waits to fill; whole milliseconds
	// Workers bounds the events of one batch processed at once.
	Workers int
}

// bulkRequest is the body daprd posts to BulkOrdersRoute (Dapr's
// BulkSubscribeEnvelope; its entries hold CloudEvents).
type bulkRequest struct {
	ID         string      `json:"id"`
	Topic      string      `json:"topic"`
	PubsubName string      `json:"pubsubname"`
	Entries    []bulkEntry `json:"entries"`
}

type bulkEntry struct {
	EntryID     string          `json:"entryId"`
	Event       json.RawMessage `json:"event"`
	ContentType string          `json:"contentType"`
}

// bulkResponse is the answer daprd reads: one status per entry. An entry
// without a status is retried by daprd.
type bulkResponse struct {
	Statuses []bulkStatus `json:"statuses"`
}

type bulkStatus struct {
	EntryID string                            `json:"entryId"`
	Status  common.SubscriptionResponseStatus `json:"status"`
}

// handleBulk answers daprd's bulk deliveries. Each entry goes through
// HandleOrder, as a single delivery would — dedupe, DROP for an invalid
// order, RETRY for a transient failure, all per entry — with up to
// bulk.Workers entries of a batch at once. An entry whose event is not a
// CloudEvent is answered DROP (to the dead-letter topic), never left
// unanswered (which daprd would retry forever). A body that is not a bulk
// envelope at all cannot be answered per entry: it gets 400, logged.
func handleBulk(h *handler.Handler, bulk Bulk, log *slog.Logger) http.Handler {
	workers := max(bulk.Workers, 1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req bulkRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, handler.MaxBodyBytes)).Decode(&req); err != nil {
			log.Error("Bulk delivery body is not a bulk envelope; daprd will retry it", "err", err)
			http.Error(w, "not a bulk subscribe envelope: "+err.Error(), http.StatusBadRequest)
			return
		}
		// Each entry's span is a child of its own event's traceparent, not
		// of the one the request header carries for the whole batch.
		h.Metrics.ObserveBatch(len(req.Entries))
		ctx := trace.ContextWithSpanContext(r.Context(), trace.SpanContext{})
		resp := bulkResponse{Statuses: make([]bulkStatus, len(req.Entries))}
		// A few goroutines take the entries in turn: one per entry would
		// pay a new goroutine's stack growth each time.
		var next atomic.Int64
		var wg sync.WaitGroup
		for range min(workers, len(req.Entries)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1) - 1); i < len(req.Entries); i = int(next.Add(1) - 1) {
					resp.Statuses[i] = bulkStatus{EntryID: req.Entries[i].EntryID, Status: handleEntry(ctx, h, &req, req.Entries[i])}
				}
			}()
		}
		wg.Wait()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&resp)
	})
}

// handleEntry processes one entry of a bulk delivery and returns its status.
func handleEntry(ctx context.Context, h *handler.Handler, req *bulkRequest, entry bulkEntry) common.SubscriptionResponseStatus {
	var retry bool
	e, err := entryEvent(req, entry)
	if err != nil {
		// Not a CloudEvent: DROP, through the same middleware.
		h.Log.Error("Dropping a bulk entry that is not a CloudEvent to the dead-letter topic", "entry_id", entry.EntryID, "err", err)
		retry, err = h.Drop(ctx, &common.TopicEvent{ID: entry.EntryID, Topic: req.Topic}, err)
	} else {
		retry, err = h.HandleOrder(ctx, e)
	}
	switch {
	case err == nil:
		return common.SubscriptionResponseStatusSuccess
	case retry:
		return common.SubscriptionResponseStatusRetry
	default:
		return common.SubscriptionResponseStatusDrop
	}
}

// entryEvent turns a bulk entry into the TopicEvent the SDK would have
// made of the same event delivered alone.
func entryEvent(req *bulkRequest, entry bulkEntry) (*common.TopicEvent, error) {
	var ce handler.CloudEvent
	if err := json.Unmarshal(entry.Event, &ce); err != nil {
		return nil, err
	}
	e := &common.TopicEvent{
		ID: ce.ID, Topic: ce.Topic, PubsubName: ce.PubsubName, TraceParent: ce.TraceParent,
		DataContentType: ce.DataContentType, RawData: ce.Data,
	}
	if e.Topic == "" {
		e.Topic = req.Topic
	}
	if e.PubsubName == "" {
		e.PubsubName = req.PubsubName
	}
	if ce.DataBase64 != "" {
		b, err := base64.StdEncoding.DecodeString(ce.DataBase64)
		if err != nil {
			return nil, err
		}
		e.RawData = b
	}
	return e, nil
}

// subscriptionJSON is one entry of the app's answer to GET /dapr/subscribe
// (Dapr's SubscriptionJSON).
type subscriptionJSON struct {
	PubsubName      string            `json:"pubsubname"`
	Topic           string            `json:"topic"`
	Route           string            `json:"route"`
	DeadLetterTopic string            `json:"deadLetterTopic,omitempty"`
	Metadata        map[string]string `json:"metadata,omitempty"`
	BulkSubscribe   *bulkSubscribe    `json:"bulkSubscribe,omitempty"`
}

type bulkSubscribe struct {
	Enabled            bool  `json:"enabled"`
	MaxMessagesCount   int32 `json:"maxMessagesCount"`
	MaxAwaitDurationMs int32 `json:"maxAwaitDurationMs"`
}

// bulkSubscriptions is the app's answer to GET /dapr/subscribe in bulk
// mode, which the SDK cannot give (its subscriptions have no
// bulkSubscribe): subs, with the orders topic in batches to
// BulkOrdersRoute, and the dead-letter topic one by one, raw, as in the
// normal mode.
func bulkSubscriptions(subs []handler.Subscription, bulk Bulk) []subscriptionJSON {
	out := make([]subscriptionJSON, 0, len(subs))
	for _, s := range subs {
		j := subscriptionJSON{PubsubName: s.Sub.PubsubName, Topic: s.Sub.Topic, Route: s.Sub.Route, DeadLetterTopic: s.Sub.DeadLetterTopic, Metadata: s.Sub.Metadata}
		if s.Sub.Route == handler.OrdersRoute {
			j.Route = BulkOrdersRoute
			j.BulkSubscribe = &bulkSubscribe{
				Enabled: true, MaxMessagesCount: int32(bulk.MaxMessages),
				MaxAwaitDurationMs: int32(bulk.MaxAwait.Milliseconds()),
			}
		}
		out = append(out, j)
	}
	return out
}
