package publisher

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/retry"
)

// publishBulk publishes batch with Dapr's bulk publish API and returns the
// orders the sidecar acknowledged, in batch order.
//
// Each entry is application/json with entry metadata cloudevent.id =
// its o.EventID(): daprd (pkg/api/grpc BulkPublishEventAlpha1) merges
// entry metadata over the request's and builds each entry's CloudEvent from
// it, so the id is the one a single publish uses. Entry ids are the orders'
// positions in the batch: unique, as daprd requires, even when a file repeats
// an order id.
//
// The SDK reports failures in PublishEventsResponse: Error, and the entries
// that failed in FailedEvents (all of them when the call itself failed).
// Only those are sent again, with the same backoff and Attempts as a single
// publish; a permanent gRPC code gives up at once. daprd 1.16 with a
// component without native bulk publish (Redis) fails the whole call when
// one entry fails, so entries already written are sent again under their
// ids; the subscriber deduplicates them.
func (p *Publisher) publishBulk(ctx context.Context, batch []order.Order) ([]order.Order, error) {
	cfg := p.Config
	now := time.Now().UTC()
	pending := make([]dapr.PublishEventsEvent, len(batch))
	for i, o := range batch {
		o.SentAt = now
		data, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("encode order %d: %w", o.ID, err)
		}
		pending[i] = dapr.PublishEventsEvent{
			EntryID:     strconv.Itoa(i),
			Data:        data,
			ContentType: "application/json",
			Metadata:    map[string]string{order.CloudEventIDKey: o.EventID()},
		}
	}
	ok := make([]bool, len(batch))
	acked := func() []order.Order {
		var out []order.Order
		for i, o := range batch {
			if ok[i] {
				out = append(out, o)
			}
		}
		return out
	}
	var ids string     // the orders the last attempt failed
	var failed, of int // how many of how many entries it failed
	n, err := p.try(ctx, func() error {
		events := make([]any, len(pending))
		for i, e := range pending {
			events[i] = e
		}
		res := p.Client.PublishEvents(ctx, cfg.PubSub, cfg.Topic, events)
		failedIDs := failedEntries(res, pending)
		next := pending[:0:0]
		for _, e := range pending {
			if failedIDs[e.EntryID] {
				next = append(next, e)
			} else {
				ok[index(e)] = true
			}
		}
		if len(next) == 0 {
			return nil
		}
		cause := res.Error
		if len(next) < len(pending) || cause == nil {
			cause = fmt.Errorf("the sidecar failed %d of %d entries", len(next), len(pending))
		}
		ids, failed, of = orderIDs(batch, next), len(next), len(pending)
		pending = next // the next attempt sends the failed entries only
		if permanent(res.Error) {
			return retry.Permanent(cause)
		}
		return cause
	}, func(attempt int, wait time.Duration, err error) {
		p.Log.Warn("Bulk publish failed, retrying the failed entries", "orders", ids, "failed", failed, "of", of,
			"attempt", attempt, "backoff", wait, "err", err)
		p.countRetries(failed)
	})
	switch {
	case err == nil || stopped(ctx, err):
		return acked(), err
	case retry.IsPermanent(err):
		return acked(), fmt.Errorf("bulk publish of orders %s to %s/%s was refused: %w", ids, cfg.PubSub, cfg.Topic, err)
	}
	return acked(), fmt.Errorf("bulk publish of orders %s to %s/%s failed after %d attempt(s) (is the sidecar at %s running?): %w",
		ids, cfg.PubSub, cfg.Topic, n, cfg.DaprAddress, err)
}

// failedEntries is the set of entry ids of sent that res reports failed.
// FailedEvents holds the events as sent, or an entry id the SDK could not
// match; an error that names no entry fails them all.
func failedEntries(res dapr.PublishEventsResponse, sent []dapr.PublishEventsEvent) map[string]bool {
	failed := make(map[string]bool, len(res.FailedEvents))
	for _, f := range res.FailedEvents {
		switch v := f.(type) {
		case dapr.PublishEventsEvent:
			failed[v.EntryID] = true
		case string:
			failed[v] = true
		}
	}
	if res.Error != nil && len(failed) == 0 {
		for _, e := range sent {
			failed[e.EntryID] = true
		}
	}
	return failed
}

// index is the position in its batch of the order e carries.
func index(e dapr.PublishEventsEvent) int {
	i, _ := strconv.Atoi(e.EntryID) // publishBulk wrote it
	return i
}

// orderIDs lists the order ids of entries, for an error: "5, 7, 9" (the
// first 10, then how many more).
func orderIDs(batch []order.Order, entries []dapr.PublishEventsEvent) string {
	var b strings.Builder
	for k, e := range entries {
		if k == 10 {
			fmt.Fprintf(&b, " and %d more", len(entries)-k)
			break
		}
		if k > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatInt(batch[index(e)].ID, 10))
	}
	return b.String()
}
