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
