// Package testutil has the fakes that several packages' unit tests share.
// Nothing outside tests imports it.
package testutil

import (
	"bytes"
	"context"
	"errors"
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

// Publisher fakes the SDK client's PublishEvent: it applies the options as
// the SDK does and records each request, after failing the first Failures
// calls with Err (a generic error if nil). Not safe for concurrent use.
type Publisher struct {
	Err      error
	Failures int
	Calls    int
	Got      []*pb.PublishEventRequest
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
