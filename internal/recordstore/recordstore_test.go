package recordstore

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	proto "github.com/dapr/dapr/pkg/proto/components/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// start serves a Server on a socket of its own, initialized against a fresh
// miniredis, and returns a client as daprd's would be.
func start(t *testing.T) (proto.StateStoreClient, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	mr.RequireAuth("pw")
	lis, err := Listen(filepath.Join(t.TempDir(), "sockets", "records.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{}
	g := NewGRPCServer(srv)
	go func() { _ = g.Serve(lis) }() // ends with g.Stop
	t.Cleanup(func() { g.Stop(); srv.Close() })
	conn, err := grpc.NewClient("unix://"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := proto.NewStateStoreClient(conn)
	if _, err := c.Init(t.Context(), initReq(mr.Addr(), "pw")); err != nil {
		t.Fatal(err)
	}
	return c, mr
}

func initReq(host, password string) *proto.InitRequest {
	return &proto.InitRequest{Metadata: &proto.MetadataRequest{Properties: map[string]string{
		"redisHost": host, "redisPassword": password, "keyPrefix": "statestore",
	}}}
}

func firstWrite(key, value string, ttl string) *proto.SetRequest {
	r := &proto.SetRequest{Key: key, Value: []byte(value),
		Options: &proto.StateOptions{Concurrency: proto.StateOptions_CONCURRENCY_FIRST_WRITE}}
	if ttl != "" {
		r.Metadata = map[string]string{"ttlInSeconds": ttl}
	}
	return r
}

// isMismatch is whether err is what daprd maps to an ETag mismatch.
func isMismatch(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition || len(st.Details()) != 1 {
		return false
	}
	br, ok := st.Details()[0].(*errdetails.BadRequest)
	return ok && len(br.GetFieldViolations()) == 1 && br.GetFieldViolations()[0].GetField() == "etag"
}

func TestBulkSetInsertsTheAbsentAndRefusesThePresent(t *testing.T) {
	c, mr := start(t)
	ctx := t.Context()
	_, err := c.BulkSet(ctx, &proto.BulkSetRequest{Items: []*proto.SetRequest{
		firstWrite("k1", "one", "3600"), firstWrite("k2", "two", "3600"),
	}})
	if err != nil {
		t.Fatalf("first batch: %v", err)
	}
	// The same two again, and a new one: the new one is written, the call
	// says some were refused, and the first values stay.
	_, err = c.BulkSet(ctx, &proto.BulkSetRequest{Items: []*proto.SetRequest{
		firstWrite("k1", "ONE", "3600"), firstWrite("k3", "three", "60"), firstWrite("k2", "TWO", "3600"),
	}})
	if !isMismatch(err) {
		t.Fatalf("second batch: %v, want an ETag mismatch", err)
	}
	for key, want := range map[string]string{"k1": "one", "k2": "two", "k3": "three"} {
		got, err := c.Get(ctx, &proto.GetRequest{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if string(got.GetData()) != want || got.GetEtag().GetValue() != "1" {
			t.Errorf("%s = %q etag %q, want %q etag 1", key, got.GetData(), got.GetEtag().GetValue(), want)
		}
	}
	if ttl := mr.TTL("k3"); ttl != time.Minute {
		t.Errorf("k3 ttl %v, want 1m", ttl)
	}
	if ttl := mr.TTL("k1"); ttl != time.Hour {
		t.Errorf("k1 ttl %v, want 1h (a refused write leaves the first one's)", ttl)
	}
	// components-contrib state.redis's layout, so that it reads these.
	if got := mr.HGet("k1", "first-write"); got != "0" {
		t.Errorf("first-write field %q, want 0", got)
	}
}

func TestSetSingleFirstWriteAndETags(t *testing.T) {
	c, _ := start(t)
	ctx := t.Context()
	if _, err := c.Set(ctx, firstWrite("k", "v1", "")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(ctx, firstWrite("k", "v2", "")); !isMismatch(err) {
		t.Fatalf("second first-write: %v, want an ETag mismatch", err)
	}
	upd := &proto.SetRequest{Key: "k", Value: []byte("v3"), Etag: &proto.Etag{Value: "1"}}
	if _, err := c.Set(ctx, upd); err != nil {
		t.Fatalf("update at version 1: %v", err)
	}
	if _, err := c.Set(ctx, upd); !isMismatch(err) {
		t.Fatalf("update at a stale version: %v, want an ETag mismatch", err)
	}
	if _, err := c.Set(ctx, &proto.SetRequest{Key: "absent", Value: []byte("x"), Etag: &proto.Etag{Value: "1"}}); !isMismatch(err) {
		t.Fatalf("an ETag on an absent key: %v, want an ETag mismatch", err)
	}
	if _, err := c.Set(ctx, &proto.SetRequest{Key: "k", Value: []byte("x"), Etag: &proto.Etag{Value: "abc"}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a malformed ETag: %v, want InvalidArgument", err)
	}
	got, err := c.Get(ctx, &proto.GetRequest{Key: "k"})
	if err != nil || string(got.GetData()) != "v3" || got.GetEtag().GetValue() != "2" {
		t.Fatalf("k = %q etag %q (%v), want v3 etag 2", got.GetData(), got.GetEtag().GetValue(), err)
	}
	if _, err := c.Delete(ctx, &proto.DeleteRequest{Key: "k", Etag: &proto.Etag{Value: "1"}}); !isMismatch(err) {
		t.Fatalf("delete at a stale version: %v", err)
	}
	if _, err := c.Delete(ctx, &proto.DeleteRequest{Key: "k", Etag: &proto.Etag{Value: "2"}}); err != nil {
		t.Fatal(err)
	}
	got, err = c.Get(ctx, &proto.GetRequest{Key: "k"})
	if err != nil || got.GetData() != nil || got.GetEtag() != nil {
		t.Fatalf("after delete: %q %v (%v), want absent", got.GetData(), got.GetEtag(), err)
	}
}

func TestBulkGetAndBadInput(t *testing.T) {
	c, mr := start(t)
	ctx := t.Context()
	if _, err := c.Set(ctx, firstWrite("a", "A", "")); err != nil {
		t.Fatal(err)
	}
	if err := mr.Set("plain", "not a hash"); err != nil {
		t.Fatal(err)
	}
	got, err := c.BulkGet(ctx, &proto.BulkGetRequest{Items: []*proto.GetRequest{{Key: "a"}, {Key: "none"}, {Key: "plain"}}})
	if err != nil {
		t.Fatal(err)
	}
	it := got.GetItems()
	if len(it) != 3 || string(it[0].GetData()) != "A" || it[1].GetData() != nil || it[1].GetError() != "" || it[2].GetError() == "" {
		t.Fatalf("bulk get = %v", it)
	}
	// A write over a key that is not a state item changes nothing.
	_, err = c.BulkSet(ctx, &proto.BulkSetRequest{Items: []*proto.SetRequest{firstWrite("b", "B", ""), firstWrite("plain", "P", "")}})
	if err == nil || isMismatch(err) {
		t.Fatalf("write over a plain string: %v, want a plain error", err)
	}
	if mr.Exists("b") {
		t.Error("b was written although the batch failed")
	}
	if _, err := c.Set(ctx, firstWrite("c", "C", "soon")); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad ttl: %v, want InvalidArgument", err)
	}
	if _, err := c.Set(ctx, &proto.SetRequest{Value: []byte("x")}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no key: %v, want InvalidArgument", err)
	}
}

func TestInit(t *testing.T) {
	c, mr := start(t)
	ctx := context.Background()
	if _, err := c.Init(ctx, initReq(mr.Addr(), "pw")); err != nil {
		t.Errorf("a second daprd with the same metadata: %v", err)
	}
	if _, err := c.Init(ctx, initReq("127.0.0.1:1", "pw")); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("other metadata: %v, want FailedPrecondition", err)
	}
	srv := &Server{}
	for _, props := range []map[string]string{
		{},
		{"redisHost": mr.Addr(), "redisPasword": "typo"},
		{"redisHost": mr.Addr(), "failover": "true"},
	} {
		if _, err := srv.Init(ctx, &proto.InitRequest{Metadata: &proto.MetadataRequest{Properties: props}}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Init(%v) = %v, want InvalidArgument", props, err)
		}
	}
	if _, err := srv.Init(ctx, initReq(mr.Addr(), "wrong")); status.Code(err) != codes.Unavailable {
		t.Errorf("wrong password: %v, want Unavailable", err)
	}
	if _, err := srv.Get(ctx, &proto.GetRequest{Key: "a"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("before Init: %v, want FailedPrecondition", err)
	}
}

// A store restarted under a running daprd is not initialized again
// (daprd calls Init once): it serves with the metadata the first run kept.
func TestRestartedStoreServesWithoutANewInit(t *testing.T) {
	mr := miniredis.RunT(t)
	file := InitFile(filepath.Join(t.TempDir(), "records.sock"))
	first := &Server{InitFile: file}
	defer first.Close()
	ctx := t.Context()
	if _, err := first.Init(ctx, initReq(mr.Addr(), "")); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Set(ctx, firstWrite("k", "v", "")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kept metadata: %v, mode %v; want 0600 (it holds the password)", err, fi.Mode().Perm())
	}
	second := &Server{InitFile: file}
	defer second.Close()
	if ok, err := second.Restore(); !ok || err != nil {
		t.Fatalf("Restore = %v, %v", ok, err)
	}
	if _, err := second.Set(ctx, firstWrite("k", "again", "")); !isMismatch(err) {
		t.Fatalf("restored store, a present record: %v, want an ETag mismatch", err)
	}
	// A new daprd with other metadata (another Redis) replaces what was
	// restored; once it has, other metadata is refused again.
	other := miniredis.RunT(t)
	if _, err := second.Init(ctx, initReq(other.Addr(), "")); err != nil {
		t.Fatalf("Init over restored metadata: %v", err)
	}
	if _, err := second.Init(ctx, initReq(mr.Addr(), "")); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("other metadata after an Init: %v, want FailedPrecondition", err)
	}
	if none, err := (&Server{InitFile: filepath.Join(t.TempDir(), "none")}).Restore(); none || err != nil {
		t.Fatalf("Restore without a file = %v, %v; want false, nil", none, err)
	}
}
