// Package storetest has an in-memory store.StateClient for unit tests. It
// follows Dapr's rules for ETags and first-write concurrency, and answers a
// mismatch with gRPC Aborted, as daprd does (or, RedisStyle, a refused
// first-write with a plain error, as daprd's Redis state store does).
package storetest

import (
	"context"
	"errors"
	"strconv"
	"sync"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrUnavailable is what Fail can return to stand for a store that is down.
var ErrUnavailable = errors.New("state store unavailable")

type entry struct {
	value   []byte
	version int
	ttl     string // the ttlInSeconds it was written with, "" for none
}

// Mem is an in-memory Dapr state store. It is safe for concurrent use.
type Mem struct {
	// Fail, if set, is asked before each operation ("get", "save", "delete")
	// and its error, if any, is returned instead.
	Fail func(op, key string) error
	// RedisStyle makes a first-write save of an existing key fail with a
	// plain error, as Dapr's Redis state store does, instead of Aborted.
	RedisStyle bool
	// FailAfterSave, if set, is asked after a save was applied and its
	// error, if any, is returned: a call that broke after the store
	// applied the write.
	FailAfterSave func(key string) error

	mu   sync.Mutex
	data map[string]entry
}

// Keys returns how many keys are stored.
func (m *Mem) Keys() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.data)
}

// Version returns how many times key was written, 0 if it is absent.
func (m *Mem) Version(key string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.data[key].version
}

func (m *Mem) fail(op, key string) error {
	if m.Fail != nil {
		return m.Fail(op, key)
	}
	return nil
}

// GetState implements store.StateClient.
func (m *Mem) GetState(_ context.Context, _, key string, _ map[string]string) (*dapr.StateItem, error) {
	if err := m.fail("get", key); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.data[key]
	if !ok {
		return &dapr.StateItem{Key: key}, nil
	}
	return &dapr.StateItem{Key: key, Value: e.value, Etag: strconv.Itoa(e.version)}, nil
}

// SaveStateWithETag implements store.StateClient.
func (m *Mem) SaveStateWithETag(_ context.Context, _, key string, data []byte, etag string, meta map[string]string, opts ...dapr.StateOption) error {
	if err := m.fail("save", key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.data == nil {
		m.data = map[string]entry{}
	}
	e, ok := m.data[key]
	if etag != "" && (!ok || strconv.Itoa(e.version) != etag) {
		return status.Error(codes.Aborted, "possible etag mismatch")
	}
	if etag == "" && ok && firstWrite(opts) {
		if m.RedisStyle {
			return status.Error(codes.Internal, "failed saving state in state store: failed to set key")
		}
		return status.Error(codes.Aborted, "item already exists and no etag was passed")
	}
	m.data[key] = entry{value: append([]byte(nil), data...), version: e.version + 1, ttl: meta["ttlInSeconds"]}
	if m.FailAfterSave != nil {
		return m.FailAfterSave(key)
	}
	return nil
}

// SaveBulkState implements store.StateClient as daprd does for a store
// without a bulk save of its own: each item saved on its own (its
// first-write and ETag honoured), the errors joined.
func (m *Mem) SaveBulkState(ctx context.Context, storeName string, items ...*dapr.SetStateItem) error {
	var errs []error
	for _, it := range items {
		var opts []dapr.StateOption
		if it.Options != nil && it.Options.Concurrency == dapr.StateConcurrencyFirstWrite {
			opts = append(opts, dapr.WithConcurrency(dapr.StateConcurrencyFirstWrite))
		}
		etag := ""
		if it.Etag != nil {
			etag = it.Etag.Value
		}
		if err := m.SaveStateWithETag(ctx, storeName, it.Key, it.Value, etag, it.Metadata, opts...); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return status.Error(codes.Internal, errors.Join(errs...).Error())
	}
	return nil
}

// TTL is the ttlInSeconds key was last written with ("" for none).
func (m *Mem) TTL(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.data[key].ttl
}

// Expire removes key, as the store does when its TTL runs out.
func (m *Mem) Expire(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, key)
}

// DeleteStateWithETag implements store.StateClient; it ignores the ETag.
func (m *Mem) DeleteStateWithETag(_ context.Context, _, key string, _ *dapr.ETag, _ map[string]string, _ *dapr.StateOptions) error {
	if err := m.fail("delete", key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, key)
	return nil
}

// GetBulkState implements store.StateClient.
func (m *Mem) GetBulkState(ctx context.Context, storeName string, keys []string, meta map[string]string, _ int32) ([]*dapr.BulkStateItem, error) {
	out := make([]*dapr.BulkStateItem, 0, len(keys))
	for _, k := range keys {
		it, err := m.GetState(ctx, storeName, k, meta)
		if err != nil {
			return nil, err
		}
		out = append(out, &dapr.BulkStateItem{Key: k, Value: it.Value, Etag: it.Etag})
	}
	return out, nil
}

// firstWrite reports whether opts ask for first-write concurrency.
func firstWrite(opts []dapr.StateOption) bool {
	o := &dapr.StateOptions{}
	for _, opt := range opts {
		opt(o)
	}
	return o.Concurrency == dapr.StateConcurrencyFirstWrite
}
