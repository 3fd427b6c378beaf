package sidecar

import (
	"context"
	"log/slog"
	"net"
	"testing"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fakeDapr is the sidecar's gRPC API with SaveState alone: it keeps the
// metadata of each call.
type fakeDapr struct {
	pb.UnimplementedDaprServer
	calls chan metadata.MD
}

func (f *fakeDapr) SaveState(ctx context.Context, _ *pb.SaveStateRequest) (*emptypb.Empty, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.calls <- md
	return &emptypb.Empty{}, nil
}

// TestCallsCarryTheTokenAndTheTrace: a call made with a span in its
// context carries the API token and that span's trace context — the
// SDK's own token interceptor would replace the metadata, the trace
// with it — and a call without a span carries the token alone.
func TestCallsCarryTheTokenAndTheTrace(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDapr{calls: make(chan metadata.MD, 2)}
	srv := grpc.NewServer()
	pb.RegisterDaprServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	c, err := Dial(lis.Addr().String(), "s3cret", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	traceID, _ := trace.TraceIDFromHex("5d2a3c1e0f9b4a7c8e6d5f4a3b2c1d0e")
	spanID, _ := trace.SpanIDFromHex("1a2b3c4d5e6f7a8b")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled, Remote: true})
	traced := trace.ContextWithSpanContext(t.Context(), sc)

	for _, tc := range []struct {
		ctx         context.Context
		traceparent []string
	}{
		{traced, []string{"00-5d2a3c1e0f9b4a7c8e6d5f4a3b2c1d0e-1a2b3c4d5e6f7a8b-01"}},
		{t.Context(), nil},
	} {
		if err := c.SaveState(tc.ctx, "statestore", "k", []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
		md := <-f.calls
		if got := md.Get("dapr-api-token"); len(got) != 1 || got[0] != "s3cret" {
			t.Errorf("dapr-api-token = %q, want the token once", got)
		}
		if got := md.Get("traceparent"); len(got) != len(tc.traceparent) || len(got) == 1 && got[0] != tc.traceparent[0] {
			t.Errorf("traceparent = %q, want %q", got, tc.traceparent)
		}
	}
}
