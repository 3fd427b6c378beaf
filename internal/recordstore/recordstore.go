// Package recordstore is a Dapr pluggable state store for the subscriber's
// processed-order records. Dapr's Redis state store writes each item of a
// many-item save on its own — an EVAL and an EXPIRE per record
// (components-contrib state.DefaultBulkStore) — and its transactions do not
// honour first-write. This store takes daprd's BulkSet of a whole batch and
// inserts every record that is absent, with its TTL, in one Lua script: one
// Redis round trip per batch instead of two per record.
//
// The contract is a Dapr state store's, for what the subscriber uses:
//   - Set and BulkSet with first-write concurrency and no ETag insert an
//     item only if its key is absent; with an ETag they update it only if
//     its version matches; last-write without an ETag overwrites.
//   - A refused item (present, or an ETag that does not match) is reported
//     as an ETag mismatch (gRPC FailedPrecondition with the "etag" field
//     violation daprd maps to state.ETagMismatch, which the app sees as
//     Aborted); the other items of the batch are written. A first-write
//     writer therefore learns "someone else was first" without a read, and
//     a caller of a partly refused batch reads the items back to tell which.
//   - ttlInSeconds in an item's metadata sets its expiry (-1 removes one).
//   - Items are stored as components-contrib's state.redis stores them (a
//     hash of data, version and first-write), so with the same key prefix
//     either component reads the other's records, and a subscriber can move
//     between them without forgetting what it processed.
//
// daprd finds the component by its Unix socket (Serve) at start-up and
// calls Init with the component's metadata: redisHost, redisPassword, and
// for Redis with failover failover "true" and sentinelMasterName (redisHost
// then lists the Sentinels). A key prefix is daprd's business (keyPrefix in
// the component's metadata), not this store's.
package recordstore

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	proto "github.com/dapr/dapr/pkg/proto/components/v1"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

//go:embed set.lua
var setLua string

var setScript = redis.NewScript(setLua)

// Server is the state store's gRPC service. Its zero value is ready to be
// registered; it serves once daprd has called Init.
//
// daprd calls Init once, when it loads the component, and not again when
// the connection comes back after the store restarted. So that a restart
// of the store under a running daprd (a crash, a container restart in the
// pod) does not leave it refusing every call, the store keeps Init's
// metadata in InitFile and Restore reads it at start-up.
type Server struct {
	proto.UnimplementedStateStoreServer
	// InitFile is where Init's metadata is kept (mode 0600, it holds the
	// Redis password), in the sockets folder only daprd and the store
	// share (see InitFile); "" keeps nothing.
	InitFile string

	mu       sync.RWMutex
	rdb      redis.UniversalClient
	props    map[string]string // of the Init that made rdb
	restored bool              // rdb comes from InitFile, not from an Init to this process
}

// Restore initializes the server from InitFile when an earlier run left
// one, without waiting for Redis (the client connects on first use). It
// reports whether it did.
func (s *Server) Restore() (bool, error) {
	if s.InitFile == "" {
		return false, nil
	}
	b, err := os.ReadFile(s.InitFile)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var props map[string]string
	if err := json.Unmarshal(b, &props); err != nil {
		return false, fmt.Errorf("%s: %w", s.InitFile, err)
	}
	rdb, err := newClient(props)
	if err != nil {
		return false, fmt.Errorf("%s: %w", s.InitFile, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rdb, s.props, s.restored = rdb, props, true
	return true, nil
}

// keep writes props to InitFile, whole or not at all.
func (s *Server) keep(props map[string]string) error {
	if s.InitFile == "" {
		return nil
	}
	b, err := json.Marshal(props)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.InitFile), 0o700); err != nil {
		return err
	}
	tmp := s.InitFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.InitFile)
}

// Close closes the Redis client.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rdb == nil {
		return nil
	}
	err := s.rdb.Close()
	s.rdb = nil
	return err
}

// Init connects to the Redis the metadata names and checks that it
// answers. Several daprd may share one server (replicas on one machine):
// an Init with the same metadata keeps the client, with other metadata it
// is refused — unless the client was restored from InitFile, which an Init
// replaces.
func (s *Server) Init(ctx context.Context, req *proto.InitRequest) (*proto.InitResponse, error) {
	props := req.GetMetadata().GetProperties()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rdb != nil {
		if maps.Equal(s.props, props) {
			s.restored = false
			return &proto.InitResponse{}, nil
		}
		if !s.restored {
			return nil, status.Error(codes.FailedPrecondition, "recordstore: already initialized with other metadata (one server per component)")
		}
	}
	rdb, err := newClient(props)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, "recordstore: "+err.Error())
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, status.Errorf(codes.Unavailable, "recordstore: redis: %v", err)
	}
	if err := s.keep(props); err != nil {
		rdb.Close()
		return nil, status.Errorf(codes.Internal, "recordstore: keep the metadata for a restart: %v", err)
	}
	if s.rdb != nil {
		s.rdb.Close() // the restored one
	}
	s.rdb, s.props, s.restored = rdb, props, false
	return &proto.InitResponse{}, nil
}

// newClient is the Redis client the component's metadata asks for.
func newClient(props map[string]string) (redis.UniversalClient, error) {
	host := strings.TrimSpace(props["redisHost"])
	if host == "" {
		return nil, errors.New("metadata redisHost is required")
	}
	for name := range props {
		switch name {
		case "redisHost", "redisPassword", "failover", "sentinelMasterName":
		default:
			if !strings.HasPrefix(name, "keyPrefix") { // daprd's own, passed on
				return nil, fmt.Errorf("unknown metadata %q (known: redisHost, redisPassword, failover, sentinelMasterName, keyPrefix)", name)
			}
		}
	}
	failover, _ := strconv.ParseBool(props["failover"])
	if failover {
		master := props["sentinelMasterName"]
		if master == "" {
			return nil, errors.New("failover needs sentinelMasterName")
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: master, SentinelAddrs: strings.Split(host, ","), Password: props["redisPassword"],
		}), nil
	}
	return redis.NewClient(&redis.Options{Addr: host, Password: props["redisPassword"]}), nil
}

func (s *Server) client() (redis.UniversalClient, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.rdb == nil {
		return nil, status.Error(codes.FailedPrecondition, "recordstore: not initialized")
	}
	return s.rdb, nil
}

// Features are ETag and TTL: no transactions, no queries.
func (s *Server) Features(context.Context, *proto.FeaturesRequest) (*proto.FeaturesResponse, error) {
	return &proto.FeaturesResponse{Features: []string{"ETAG", "TTL"}}, nil
}

// Ping checks that Redis answers.
func (s *Server) Ping(ctx context.Context, _ *proto.PingRequest) (*proto.PingResponse, error) {
	rdb, err := s.client()
	if err != nil {
		return nil, err
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, status.Errorf(codes.Unavailable, "recordstore: redis: %v", err)
	}
	return &proto.PingResponse{}, nil
}

// Set writes one item; see the package doc for its conditions.
func (s *Server) Set(ctx context.Context, req *proto.SetRequest) (*proto.SetResponse, error) {
	if err := s.set(ctx, []*proto.SetRequest{req}); err != nil {
		return nil, err
	}
	return &proto.SetResponse{}, nil
}

// BulkSet writes many items in one Redis script: those whose condition
// holds are written, and if any is refused the call fails with an ETag
// mismatch naming how many.
func (s *Server) BulkSet(ctx context.Context, req *proto.BulkSetRequest) (*proto.BulkSetResponse, error) {
	if err := s.set(ctx, req.GetItems()); err != nil {
		return nil, err
	}
	return &proto.BulkSetResponse{}, nil
}

func (s *Server) set(ctx context.Context, items []*proto.SetRequest) error {
	if len(items) == 0 {
		return nil
	}
	rdb, err := s.client()
	if err != nil {
		return err
	}
	keys := make([]string, len(items))
	args := make([]any, 0, 4*len(items))
	for i, it := range items {
		if it.GetKey() == "" {
			return status.Error(codes.InvalidArgument, "recordstore: an item without a key")
		}
		ttl := "0"
		if v, ok := it.GetMetadata()["ttlInSeconds"]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < -1 {
				return status.Errorf(codes.InvalidArgument, "recordstore: ttlInSeconds of %s: %q is not a whole number ≥ -1", it.GetKey(), v)
			}
			ttl = strconv.FormatInt(n, 10)
		}
		if it.GetEtag() != nil && it.GetEtag().GetValue() != "" {
			if _, err := strconv.ParseUint(it.GetEtag().GetValue(), 10, 64); err != nil {
				return etagError(codes.InvalidArgument, fmt.Sprintf("invalid etag %q for %s", it.GetEtag().GetValue(), it.GetKey()))
			}
		}
		first := "0"
		if it.GetOptions().GetConcurrency() == proto.StateOptions_CONCURRENCY_FIRST_WRITE {
			first = "1"
		}
		keys[i] = it.GetKey()
		args = append(args, it.GetEtag().GetValue(), first, ttl, it.GetValue())
	}
	refused, err := setScript.Run(ctx, rdb, keys, args...).Int64Slice()
	if err != nil {
		return status.Errorf(codes.Unavailable, "recordstore: write %d items: %v", len(items), err)
	}
	if len(refused) > 0 {
		return etagError(codes.FailedPrecondition, fmt.Sprintf("%d of %d items refused: present (first-write) or another version (first: %s)",
			len(refused), len(items), keys[refused[0]-1]))
	}
	return nil
}

// etagError is the error daprd turns into state.ETagError: the code
// (FailedPrecondition: mismatch, InvalidArgument: invalid) with one field
// violation on "etag" (dapr pkg/components/state/pluggable.go).
func etagError(code codes.Code, msg string) error {
	st, err := status.New(code, "recordstore: "+msg).WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "etag", Description: msg}},
	})
	if err != nil {
		return status.Error(code, "recordstore: "+msg)
	}
	return st.Err()
}

// Get reads one item: no data and no ETag when it is absent.
func (s *Server) Get(ctx context.Context, req *proto.GetRequest) (*proto.GetResponse, error) {
	rdb, err := s.client()
	if err != nil {
		return nil, err
	}
	m, err := rdb.HGetAll(ctx, req.GetKey()).Result()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "recordstore: read %s: %v", req.GetKey(), err)
	}
	data, etag := item(m)
	return &proto.GetResponse{Data: data, Etag: etag}, nil
}

// BulkGet reads many items in one pipeline; an item that cannot be read
// carries its error.
func (s *Server) BulkGet(ctx context.Context, req *proto.BulkGetRequest) (*proto.BulkGetResponse, error) {
	rdb, err := s.client()
	if err != nil {
		return nil, err
	}
	cmds := make([]*redis.MapStringStringCmd, len(req.GetItems()))
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, it := range req.GetItems() {
			cmds[i] = p.HGetAll(ctx, it.GetKey())
		}
		return nil
	})
	if err != nil && !isItemError(cmds) {
		return nil, status.Errorf(codes.Unavailable, "recordstore: read %d items: %v", len(cmds), err)
	}
	out := &proto.BulkGetResponse{Items: make([]*proto.BulkStateItem, len(cmds))}
	for i, c := range cmds {
		it := &proto.BulkStateItem{Key: req.GetItems()[i].GetKey()}
		if m, err := c.Result(); err != nil {
			it.Error = err.Error()
		} else {
			it.Data, it.Etag = item(m)
		}
		out.Items[i] = it
	}
	return out, nil
}

// isItemError is whether every failed command of a pipeline failed with a
// reply of Redis (a wrong type), not the connection.
func isItemError(cmds []*redis.MapStringStringCmd) bool {
	for _, c := range cmds {
		var rerr redis.Error
		if c.Err() != nil && !errors.As(c.Err(), &rerr) {
			return false
		}
	}
	return true
}

// item is the data and ETag of a stored hash; nil, nil when absent.
func item(m map[string]string) ([]byte, *proto.Etag) {
	data, ok := m["data"]
	if !ok {
		return nil, nil
	}
	var etag *proto.Etag
	if v, ok := m["version"]; ok {
		etag = &proto.Etag{Value: v}
	}
	return []byte(data), etag
}

// Delete removes one item; with an ETag only at that version.
func (s *Server) Delete(ctx context.Context, req *proto.DeleteRequest) (*proto.DeleteResponse, error) {
	if err := s.delete(ctx, req); err != nil {
		return nil, err
	}
	return &proto.DeleteResponse{}, nil
}

// BulkDelete removes many items, one by one.
func (s *Server) BulkDelete(ctx context.Context, req *proto.BulkDeleteRequest) (*proto.BulkDeleteResponse, error) {
	for _, it := range req.GetItems() {
		if err := s.delete(ctx, it); err != nil {
			return nil, err
		}
	}
	return &proto.BulkDeleteResponse{}, nil
}

var deleteScript = redis.NewScript(`
if ARGV[1] ~= "" and redis.call("HGET", KEYS[1], "version") ~= ARGV[1] then
  return 0
end
redis.call("DEL", KEYS[1])
return 1`)

func (s *Server) delete(ctx context.Context, req *proto.DeleteRequest) error {
	rdb, err := s.client()
	if err != nil {
		return err
	}
	done, err := deleteScript.Run(ctx, rdb, []string{req.GetKey()}, req.GetEtag().GetValue()).Int()
	if err != nil {
		return status.Errorf(codes.Unavailable, "recordstore: delete %s: %v", req.GetKey(), err)
	}
	if done == 0 {
		return etagError(codes.FailedPrecondition, "another version of "+req.GetKey())
	}
	return nil
}
