// Package testutil has the fakes that several packages' unit tests share.
// Nothing outside tests, and the test helpers they share (handlertest), imports it.
package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
)

// SyncBuffer is a bytes.Buffer that is safe for concurrent writers.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Publisher fakes the SDK client's PublishEvent and PublishEvents: it
// applies the options as the SDK does and records each request, after
// failing the first Failures calls (of either kind) with Err (a generic error
// if nil). Not safe for concurrent use.
type Publisher struct {
	Err      error
	Failures int
	Calls    int
	Got      []*pb.PublishEventRequest
	// FailEntry, if set, fails one entry of a successful PublishEvents call
	// (numbered from 1 among all calls) when it returns true: the entry is
	// reported in FailedEvents, as daprd reports a failed bulk entry.
	FailEntry func(call int, e dapr.PublishEventsEvent) bool
	// Batches is the number of entries of each PublishEvents call.
	Batches []int
}

// PublishEvent records the request; data must be []byte.
func (f *Publisher) PublishEvent(_ context.Context, pubsub, topic string, data any, opts ...dapr.PublishEventOption) error {
	f.Calls++
	if f.Calls <= f.Failures {
		if f.Err != nil {
			return f.Err
		}
		return errors.New("sidecar unavailable")
	}
	req := &pb.PublishEventRequest{PubsubName: pubsub, Topic: topic, Data: data.([]byte)}
	for _, o := range opts {
		o(req)
	}
	f.Got = append(f.Got, req)
	return nil
}

// PublishEvents records each published entry in Got as the request a
// single publish of it would be (data, content type, entry metadata). Events
// must be dapr.PublishEventsEvent. A failed call reports every event failed,
// with an error wrapping Err, as the SDK does.
func (f *Publisher) PublishEvents(_ context.Context, pubsub, topic string, events []any, opts ...dapr.PublishEventsOption) dapr.PublishEventsResponse {
	f.Calls++
	f.Batches = append(f.Batches, len(events))
	if f.Calls <= f.Failures {
		err := f.Err
		if err == nil {
			err = errors.New("sidecar unavailable")
		}
		return dapr.PublishEventsResponse{Error: fmt.Errorf("error publishing events unto %s topic: %w", topic, err), FailedEvents: events}
	}
	req := &pb.BulkPublishRequest{PubsubName: pubsub, Topic: topic}
	for _, ev := range events {
		e := ev.(dapr.PublishEventsEvent)
		req.Entries = append(req.Entries, &pb.BulkPublishRequestEntry{EntryId: e.EntryID, Event: e.Data, ContentType: e.ContentType, Metadata: e.Metadata})
	}
	for _, o := range opts {
		o(req)
	}
	var failed []any
	for i, ev := range events {
		if f.FailEntry != nil && f.FailEntry(f.Calls, ev.(dapr.PublishEventsEvent)) {
			failed = append(failed, ev)
			continue
		}
		e := req.Entries[i]
		f.Got = append(f.Got, &pb.PublishEventRequest{PubsubName: pubsub, Topic: topic, Data: e.Event,
			DataContentType: e.ContentType, Metadata: e.Metadata})
	}
	if len(failed) > 0 {
		return dapr.PublishEventsResponse{Error: fmt.Errorf("error publishing events unto %s topic: %w", topic, error(nil)), FailedEvents: failed}
	}
	return dapr.PublishEventsResponse{FailedEvents: []any{}}
}

// OrderStore fakes the SDK client's ExecuteStateTransaction and GetState
// over a map, as Dapr's transactional outbox on a store behaves: a
// transaction stores its upserts, except outbox projections (metadata
// outbox.projection "true"), and publishes one event per stored upsert — the
// projection's value when there is one for the key — recorded in Events.
// The first Failures calls (of either kind) fail with Err; the first
// LoseAnswers transactions after them commit and then fail, as one whose
// answer was lost with its sidecar. Not safe for concurrent use.
type OrderStore struct {
	Data        map[string][]byte
	Events      [][]byte
	Writes      int // stored upserts
	Failures    int
	LoseAnswers int
	Err         error
	// DownAfterLoss fails that many calls after each lost answer: the
	// sidecar restarting.
	DownAfterLoss int
	// Components is what GetMetadata lists.
	Components []*dapr.MetadataRegisteredComponents
	calls      int
	down       int
}

func (f *OrderStore) fail() error {
	if f.down > 0 {
		f.down--
		return errors.New("connection refused")
	}
	f.calls++
	if f.calls > f.Failures {
		return nil
	}
	if f.Err != nil {
		return f.Err
	}
	return errors.New("sidecar unavailable")
}

// ExecuteStateTransaction applies ops as the outbox does.
func (f *OrderStore) ExecuteStateTransaction(_ context.Context, _ string, _ map[string]string, ops []*dapr.StateOperation) error {
	if err := f.fail(); err != nil {
		return err
	}
	if f.Data == nil {
		f.Data = map[string][]byte{}
	}
	projected := map[string][]byte{}
	for _, op := range ops {
		if op.Item.Metadata["outbox.projection"] == "true" {
			projected[op.Item.Key] = op.Item.Value
		}
	}
	for _, op := range ops {
		if op.Type != dapr.StateOperationTypeUpsert || op.Item.Metadata["outbox.projection"] == "true" {
			continue
		}
		f.Data[op.Item.Key] = op.Item.Value
		f.Writes++
		event := op.Item.Value
		if p, ok := projected[op.Item.Key]; ok {
			event = p
		}
		f.Events = append(f.Events, event)
	}
	if f.LoseAnswers > 0 {
		f.LoseAnswers--
		f.down = f.DownAfterLoss
		return errors.New("transport is closing")
	}
	return nil
}

// GetState returns the stored value of key (an empty item when there is
// none, as daprd answers).
func (f *OrderStore) GetState(_ context.Context, _, key string, _ map[string]string) (*dapr.StateItem, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &dapr.StateItem{Key: key, Value: f.Data[key]}, nil
}

// GetMetadata answers with Components, as daprd's metadata API lists them.
func (f *OrderStore) GetMetadata(context.Context) (*dapr.GetMetadataResponse, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &dapr.GetMetadataResponse{RegisteredComponents: f.Components}, nil
}
