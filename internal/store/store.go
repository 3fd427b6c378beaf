// Package store keeps the subscriber's durable records in a Dapr state
// store, through the sidecar's state API: one record per processed order,
// which is both the order's effect and what makes processing idempotent,
// and the dead letters, so they can be listed and replayed.
//
// Every key starts with the consumer's app id ("subscriber/order/5"), and
// the component uses keyPrefix "name", so the dead-letter tool, which runs
// beside another sidecar, sees the same keys, and a second subscriber app
// (fan-out) keeps its own records.
//
// The Dapr state API is used rather than a Redis client so that the app
// stays independent of the store, like it is of the broker: any Dapr state
// store with first-write concurrency and ETags works (tested: Redis, and
// Dapr's in-memory store in the launcher's embedded mode).
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/retry"
)

// StateClient is the part of the Dapr SDK client the store uses;
// dapr.Client satisfies it.
type StateClient interface {
	GetState(ctx context.Context, storeName, key string, meta map[string]string) (*dapr.StateItem, error)
	SaveStateWithETag(ctx context.Context, storeName, key string, data []byte, etag string, meta map[string]string, so ...dapr.StateOption) error
	DeleteStateWithETag(ctx context.Context, storeName, key string, etag *dapr.ETag, meta map[string]string, opts *dapr.StateOptions) error
	GetBulkState(ctx context.Context, storeName string, keys []string, meta map[string]string, parallelism int32) ([]*dapr.BulkStateItem, error)
	SaveBulkState(ctx context.Context, storeName string, items ...*dapr.SetStateItem) error
}

// Store is the records of one consumer app. It is safe for concurrent use,
// also from several processes: every write is conditional on an ETag.
type Store struct {
	client  StateClient
	name    string // Dapr state store component
	records string // the component of the processed-order records; name by default
	appID   string // key namespace
	// TTLs of the records (Dapr's ttlInSeconds); 0 keeps them for good.
	recordTTL, deadLetterTTL time.Duration
	batch                    *batcher // record writes in batches; nil: one call each
}

// New returns the store of consumer appID in Dapr state store component name.
func New(client StateClient, name, appID string) *Store {
	return &Store{client: client, name: name, records: name, appID: appID}
}

// WithRecordStore keeps the processed-order records in Dapr state store
// component name instead (the dead letters stay): e.g. the record store of
// components/records/, which inserts a batch of records in one Redis step.
// It must honour first-write per item and see the same keys. "" changes
// nothing. It returns s.
func (s *Store) WithRecordStore(name string) *Store {
	if name != "" {
		s.records = name
	}
	return s
}

// RecordMargin is how much longer than the retention window a processed
// order's record lives: window/24, at least a minute (an hour for the
// default 24 h). The keeper trims an entry only once it is older than the
// window, a pass (10 s) later at most; the margin covers that and the
// clocks of the keeper and Redis, so a record outlives every delivery of
// its entry.
func RecordMargin(window time.Duration) time.Duration {
	return max(window/24, time.Minute)
}

// WithRetention makes processed-order records expire window +
// RecordMargin(window) after they are written, and dead letters
// deadLetters after; 0 keeps them for good. It returns s.
func (s *Store) WithRetention(window, deadLetters time.Duration) *Store {
	if window > 0 {
		s.recordTTL = window + RecordMargin(window)
	}
	s.deadLetterTTL = deadLetters
	return s
}

// ttl is the state metadata giving a record d to live; nil for none.
func ttl(d time.Duration) map[string]string {
	if d <= 0 {
		return nil
	}
	return map[string]string{"ttlInSeconds": strconv.FormatInt(int64(d.Seconds()), 10)}
}

// Processed is the record of an order whose effect was applied.
type Processed struct {
	Order       order.Order `json:"order"`
	EventID     string      `json:"event_id"`
	ProcessedAt time.Time   `json:"processed_at"`
	// Attempt is the writer's own token for this write, so that a writer
	// whose call failed can tell later whether its write landed.
	Attempt string `json:"attempt,omitempty"`
}

// ProcessedKey is the state key of the record of order id's first event
// (its only one in the original example), without the store's own prefix.
func (s *Store) ProcessedKey(id int64) string {
	return s.appID + "/order/" + strconv.FormatInt(id, 10)
}

// EventKey is the state key of the record of event o: ProcessedKey for an
// order's first event, ProcessedKey + "/S" for its event S > 1.
func (s *Store) EventKey(o order.Order) string {
	if seq := o.Sequence(); seq > 1 {
		return s.ProcessedKey(o.ID) + "/" + strconv.FormatInt(seq, 10)
	}
	return s.ProcessedKey(o.ID)
}

// MarkProcessed records event o as processed, once, under the caller's
// attempt token: it returns true if this call wrote the record, false if a
// record for o's id and sequence was already there (a duplicate delivery), and an error if the
// store could not be reached, in which case the caller should retry. After
// an error the write may still have landed (the call broke after the
// store applied it): the record's Attempt then says so.
func (s *Store) MarkProcessed(ctx context.Context, o order.Order, eventID, attempt string) (bool, error) {
	b, err := json.Marshal(Processed{Order: o, EventID: eventID, ProcessedAt: time.Now().UTC(), Attempt: attempt})
	if err != nil {
		return false, err
	}
	if s.batch != nil {
		return s.batch.insert(ctx, s.EventKey(o), b, s.recordTTL)
	}
	return s.insertOne(ctx, s.records, s.EventKey(o), b, s.recordTTL)
}

// ProcessedRecord reads the record of order id's first event: found is
// false when the order was never processed; an error means the store
// could not be read.
func (s *Store) ProcessedRecord(ctx context.Context, id int64) (rec Processed, found bool, err error) {
	return s.EventRecord(ctx, order.Order{ID: id})
}

// EventRecord reads event o's record (by o's id and sequence), as
// ProcessedRecord does an order's first.
func (s *Store) EventRecord(ctx context.Context, o order.Order) (rec Processed, found bool, err error) {
	key := s.EventKey(o)
	it, err := s.client.GetState(ctx, s.records, key, nil)
	if err != nil {
		return Processed{}, false, fmt.Errorf("read %s from state store %s: %w", key, s.records, err)
	}
	if it == nil || len(it.Value) == 0 {
		return Processed{}, false, nil
	}
	if err := json.Unmarshal(it.Value, &rec); err != nil {
		return Processed{}, false, fmt.Errorf("decode %s: %w", key, err)
	}
	return rec, true, nil
}

// insertOne writes key only if it is absent, to live for life (0: for good),
// with Dapr's first-write concurrency and no ETag, which a store must
// refuse for an existing key (a refused write leaves the first one's TTL).
// Stores refuse differently: most with an ETag mismatch (gRPC Aborted);
// Redis with a plain error, and only for keys written first-write, as all
// of ours are. So a refusal that is not Aborted is told from "store down"
// by reading the key: present means someone else inserted it, unless it
// holds exactly this value.
func (s *Store) insertOne(ctx context.Context, storeName, key string, value []byte, life time.Duration) (bool, error) {
	err := s.client.SaveStateWithETag(ctx, storeName, key, value, "", ttl(life), dapr.WithConcurrency(dapr.StateConcurrencyFirstWrite))
	if err == nil {
		return true, nil
	}
	if status.Code(err) == codes.Aborted {
		return false, nil
	}
	if it, gerr := s.client.GetState(ctx, storeName, key, nil); gerr == nil && it != nil && len(it.Value) > 0 {
		// Present: someone else's write — or this one, applied although
		// the call failed, which the identical value (it carries the
		// writer's attempt token and time) tells.
		return bytes.Equal(it.Value, value), nil
	}
	return false, fmt.Errorf("save %s in state store %s: %w", key, storeName, err)
}

// Ping checks that the state store, and the record store if it is
// another, answer through the sidecar.
func (s *Store) Ping(ctx context.Context) error {
	names := []string{s.name}
	if s.records != s.name {
		names = append(names, s.records)
	}
	for _, name := range names {
		if _, err := s.client.GetState(ctx, name, s.appID+"/ping", nil); err != nil {
			return fmt.Errorf("state store %s: %w", name, err)
		}
	}
	return nil
}

// DeadLetter is an event the subscriber gave up on, as it arrived on the
// dead-letter topic, with the reason.
type DeadLetter struct {
	EventID     string    `json:"event_id"`
	PubSub      string    `json:"pubsub"`
	Topic       string    `json:"topic"` // the topic it was first published to
	ContentType string    `json:"content_type"`
	Data        []byte    `json:"data"` // the payload as published
	Reason      string    `json:"reason"`
	ReceivedAt  time.Time `json:"received_at"`
}

func (s *Store) deadLetterKey(eventID string) string { return s.appID + "/deadletter/" + eventID }
func (s *Store) indexKey() string                    { return s.appID + "/deadletters" }

// AddDeadLetter keeps dl, once per event id: a redelivered dead letter is
// not stored twice. It returns whether this call stored it.
func (s *Store) AddDeadLetter(ctx context.Context, dl DeadLetter) (bool, error) {
	b, err := json.Marshal(dl)
	if err != nil {
		return false, err
	}
	first, err := s.insertOne(ctx, s.name, s.deadLetterKey(dl.EventID), b, s.deadLetterTTL)
	if err != nil {
		return false, err
	}
	// Also when it was there already: an earlier try may have stopped
	// between the two writes.
	return first, s.updateIndex(ctx, s.indexKey(), func(ids []string) []string {
		if slices.Contains(ids, dl.EventID) {
			return nil
		}
		return append(ids, dl.EventID)
	})
}

// DeadLetters lists the dead letters kept, oldest first.
func (s *Store) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	ids, _, err := s.index(ctx, s.indexKey())
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.deadLetterKey(id)
	}
	items, err := s.client.GetBulkState(ctx, s.name, keys, nil, 8)
	if err != nil {
		return nil, fmt.Errorf("read dead letters from state store %s: %w", s.name, err)
	}
	byKey := make(map[string]*dapr.BulkStateItem, len(items))
	for _, it := range items {
		byKey[it.Key] = it
	}
	out := make([]DeadLetter, 0, len(ids))
	var gone []string
	for i, k := range keys {
		it := byKey[k]
		if it == nil || len(it.Value) == 0 {
			gone = append(gone, ids[i]) // expired, or removed by a concurrent replay
			continue
		}
		if it.Error != "" {
			return nil, fmt.Errorf("read %s: %s", k, it.Error)
		}
		var dl DeadLetter
		if err := json.Unmarshal(it.Value, &dl); err != nil {
			return nil, fmt.Errorf("decode %s: %w", k, err)
		}
		out = append(out, dl)
	}
	if len(gone) > 0 {
		// Forget expired dead letters in the index too, or it would grow.
		err = s.updateIndex(ctx, s.indexKey(), func(ids []string) []string {
			kept := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return slices.Contains(gone, id) })
			if len(kept) == len(ids) {
				return nil
			}
			return kept
		})
	}
	return out, err
}

// RemoveDeadLetter forgets the dead letter with eventID, after a replay.
func (s *Store) RemoveDeadLetter(ctx context.Context, eventID string) error {
	err := s.updateIndex(ctx, s.indexKey(), func(ids []string) []string {
		i := slices.Index(ids, eventID)
		if i < 0 {
			return nil
		}
		return slices.Delete(ids, i, i+1)
	})
	if err != nil {
		return err
	}
	if err := s.client.DeleteStateWithETag(ctx, s.name, s.deadLetterKey(eventID), nil, nil, nil); err != nil {
		return fmt.Errorf("delete dead letter %s: %w", eventID, err)
	}
	return nil
}

// index reads the list of ids under key (the dead letters', or a shard of
// the held lives').
func (s *Store) index(ctx context.Context, key string) (ids []string, etag string, err error) {
	it, err := s.client.GetState(ctx, s.name, key, nil)
	if err != nil {
		return nil, "", fmt.Errorf("read the index %s from state store %s: %w", key, s.name, err)
	}
	if it == nil || len(it.Value) == 0 {
		return nil, "", nil
	}
	if err := json.Unmarshal(it.Value, &ids); err != nil {
		return nil, "", fmt.Errorf("decode the index %s: %w", key, err)
	}
	return ids, it.Etag, nil
}

// indexRace is the wait between tries of an index update that lost a race
// to another writer: short, since the other writer is done.
var indexRace = retry.Backoff{First: 5 * time.Millisecond, Max: 250 * time.Millisecond}

// updateIndex applies change to the index under key with optimistic
// concurrency, retrying (51 tries at most) when another writer got there
// first. change returns nil for "nothing to do".
func (s *Store) updateIndex(ctx context.Context, key string, change func([]string) []string) error {
	var fatal error // not a lost race: returned as it is
	_, err := indexRace.Do(ctx, 51, func(int) error {
		ids, etag, err := s.index(ctx, key)
		if err != nil {
			fatal = err
			return retry.Permanent(err)
		}
		next := change(ids)
		if next == nil {
			return nil
		}
		b, err := json.Marshal(next)
		if err != nil {
			fatal = err
			return retry.Permanent(err)
		}
		// With the ETag read, or none to create it; either way first-write,
		// so a concurrent writer makes this fail and it is read again.
		return s.client.SaveStateWithETag(ctx, s.name, key, b, etag, nil, dapr.WithConcurrency(dapr.StateConcurrencyFirstWrite))
	}, nil)
	switch {
	case err == nil:
		return nil
	case fatal != nil:
		return fatal
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return err
	}
	return fmt.Errorf("update the index %s: %w", key, err)
}
