package publisher

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/retry"
)

// Store is the part of the Dapr SDK client the outbox mode uses; dapr.Client
// satisfies it, and tests use a fake.
type Store interface {
	ExecuteStateTransaction(ctx context.Context, storeName string, meta map[string]string, ops []*dapr.StateOperation) error
	GetState(ctx context.Context, storeName, key string, meta map[string]string) (*dapr.StateItem, error)
	GetMetadata(ctx context.Context) (*dapr.GetMetadataResponse, error)
}

// CheckOrderStore asks the sidecar (retrying while it starts) whether it
// has loaded the order store as a transactional state store, which Dapr's
// outbox needs, and says what is wrong when not. Which stores qualify:
// state.redis and state.in-memory (the embedded Redis's) here; any store
// whose metadata lists the TRANSACTIONAL capability.
func (p *Publisher) CheckOrderStore(ctx context.Context) error {
	name := p.Config.OrderStore
	var md *dapr.GetMetadataResponse
	_, err := p.try(ctx, func() (err error) { md, err = p.Store.GetMetadata(ctx); return err }, nil)
	if stopped(ctx, err) {
		return err
	}
	if err != nil {
		return fmt.Errorf("-outbox: ask the sidecar at %s for its components: %w", p.Config.DaprAddress, err)
	}
	for _, c := range md.RegisteredComponents {
		if c.Name != name {
			continue
		}
		if !strings.HasPrefix(c.Type, "state.") {
			return fmt.Errorf("-outbox: component %s is a %s, not a state store", name, c.Type)
		}
		if !slices.Contains(c.Capabilities, "TRANSACTIONAL") {
			return fmt.Errorf("-outbox: state store %s (%s) is not transactional (its capabilities: %s), and Dapr's outbox needs a transaction to commit an order with its event",
				name, c.Type, strings.Join(c.Capabilities, ", "))
		}
		return nil
	}
	return fmt.Errorf("-outbox: the sidecar has no state store %s: give it components/outbox/ (make run OUTBOX=1 does), or name another with -order-store", name)
}

// OrderKey is the key under which the outbox mode stores order id.
func OrderKey(id int64) string { return "orders/" + strconv.FormatInt(id, 10) }

// outboxProjection is the metadata that makes an upsert of a transaction the
// event Dapr's outbox publishes instead of stored state: the docs'
// projection. Its content type makes the event's data a JSON object; on the
// stored upsert that content type would make the Redis state store use
// JSON.SET, which plain Redis lacks (docs/upstream-outbox.md).
var outboxProjection = map[string]string{"outbox.projection": "true", "contentType": "application/json"}

// OutboxOps is the state transaction that stores data under key and makes
// Dapr's outbox publish it as JSON: the upsert, and the same value as the
// outbox projection (the event).
func OutboxOps(key string, data []byte) []*dapr.StateOperation {
	return []*dapr.StateOperation{
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: key, Value: data}},
		{Type: dapr.StateOperationTypeUpsert, Item: &dapr.SetStateItem{Key: key, Value: data, Metadata: outboxProjection}},
	}
}

// storeOne is the outbox mode's publishOne: it stores o under OrderKey in
// Config.OrderStore in one state transaction, whose commit makes Dapr's
// transactional outbox publish the order to Config.Topic. The order is stored
// if and only if its event is published (Dapr's outbox: the event goes once
// the transaction commits).
//
// An order already stored with the same id and message is not written again
// (its event went when it was stored; an order service never replaces an
// order): it counts as published. One stored with another message is
// refused, as a conflict. An order's later event (a life, -events) is
// stored over its earlier one: the key holds the order's latest event. The transaction carries no ETag: on the Redis
// store a refused ETag fails only its own write and the outbox still
// publishes (docs/upstream-outbox.md).
//
// A failed transaction is retried as publishOne retries, but only once the
// store has answered that it did not commit: one whose answer was lost with
// a killed sidecar may have, and then its event is on its way, and a second
// write would store and publish the order twice. While the store cannot
// answer (the sidecar restarting), the publisher waits, each look an
// attempt.
func (p *Publisher) storeOne(ctx context.Context, o order.Order) error {
	cfg := p.Config
	key := OrderKey(o.ID)
	if done, err := p.alreadyStored(ctx, key, o); err != nil || done {
		return err
	}
	o.SentAt = time.Now().UTC()
	data, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode order %d: %w", o.ID, err)
	}
	ops := OutboxOps(key, data)
	// After a failed call the transaction is sent again only once the
	// store says it did not commit; until it can answer (its sidecar
	// restarting), that look is the attempt, and it fails.
	n, err := retry.Publish.Do(ctx, cfg.Attempts, func(attempt int) error {
		if attempt > 1 {
			landed, err := p.storedAs(ctx, key, data)
			if err != nil {
				return err
			}
			if landed {
				p.Log.Warn("The order's transaction committed although its call failed; its event is on its way", "id", o.ID)
				return nil
			}
		}
		err := p.Store.ExecuteStateTransaction(ctx, cfg.OrderStore, nil, ops)
		if permanent(err) {
			return retry.Permanent(err)
		}
		return err
	}, func(attempt int, wait time.Duration, err error) {
		p.Log.Warn("Storing the order failed; looking whether it committed before trying again", "id", o.ID, "attempt", attempt, "backoff", wait, "err", err)
		p.countRetries(1)
	})
	switch {
	case err == nil || stopped(ctx, err):
		return err
	case retry.IsPermanent(err):
		return fmt.Errorf("store order %d in %s was refused: %w", o.ID, cfg.OrderStore, err)
	}
	return fmt.Errorf("store order %d in %s failed after %d attempt(s) (is the sidecar at %s running?): %w",
		o.ID, cfg.OrderStore, n, cfg.DaprAddress, err)
}

// alreadyStored reports whether o is stored under key already: true for
// the same id and message, an error for another message. A store that
// cannot be read is retried, as a transaction is.
func (p *Publisher) alreadyStored(ctx context.Context, key string, o order.Order) (bool, error) {
	var item *dapr.StateItem
	_, err := p.try(ctx, func() (err error) { item, err = p.Store.GetState(ctx, p.Config.OrderStore, key, nil); return err }, nil)
	if stopped(ctx, err) {
		return false, err
	}
	if err != nil {
		return false, fmt.Errorf("read order %d from %s: %w", o.ID, p.Config.OrderStore, err)
	}
	if item == nil || len(item.Value) == 0 {
		return false, nil
	}
	stored, err := order.Decode(item.Value)
	if err != nil {
		return false, fmt.Errorf("order %d: %s holds %q under %s, which is not an order: %w", o.ID, p.Config.OrderStore, item.Value, key, err)
	}
	switch {
	case stored.Sequence() < o.Sequence():
		return false, nil // the order's next event: stored over its last
	case stored.Sequence() > o.Sequence():
		p.Log.Info("A later event of this order is stored already; this one not written again", "id", o.ID, "seq", o.Sequence(), "stored_seq", stored.Sequence())
		return true, nil
	}
	if c := stored.Conflict(o); c != "" {
		return false, fmt.Errorf("%s is already stored with other content (%s); an order event is never replaced", o.Name(), c)
	}
	p.Log.Info("Order already stored; not written again", "id", o.ID, "seq", o.Sequence())
	return true, nil
}

// storedAs reports whether key holds exactly data: the write that carried
// it committed.
func (p *Publisher) storedAs(ctx context.Context, key string, data []byte) (bool, error) {
	item, err := p.Store.GetState(ctx, p.Config.OrderStore, key, nil)
	if err != nil {
		return false, err
	}
	return item != nil && bytes.Equal(item.Value, data), nil
}
