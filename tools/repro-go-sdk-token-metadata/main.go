// Command repro-go-sdk-token-metadata reproduces, with the Dapr Go SDK's
// own client, a call that loses its outgoing gRPC metadata — the trace
// context the SDK's WithTraceID put there, or any other — when the client
// has an API token.
//
// The client that NewClientWithAddress dials (go-sdk v1.15.0 and main as
// of 2026-04-10, client/client.go authTokenUnaryInterceptor and
// authTokenStreamInterceptor) adds the token with
// metadata.NewOutgoingContext(ctx, metadata.Pairs("dapr-api-token", …)),
// which replaces the call's outgoing metadata instead of adding to it
// (metadata.AppendToOutgoingContext). With DAPR_API_TOKEN set, as on every
// sidecar with API token authentication, the sidecar never sees the
// traceparent of client.WithTraceID, so its spans of the call start a
// trace of their own.
//
// It needs nothing but Go: a stand-in for daprd's gRPC API on loopback
// (SaveState alone) records the metadata of each call; the SDK's client
// calls it with a traceparent in its context, without and with a token.
// It exits 1 when the traceparent was lost: the defect reproduced.
// Run:
//
//	go run ./tools/repro-go-sdk-token-metadata
package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"

	"dapr-pub-sub/tools/reprokit"
)

// traceparent is the trace context the calls carry.
const traceparent = "00-5d2a3c1e0f9b4a7c8e6d5f4a3b2c1d0e-1a2b3c4d5e6f7a8b-01"

// sidecar stands in for daprd's gRPC API: it keeps each SaveState's
// incoming metadata.
type sidecar struct {
	pb.UnimplementedDaprServer
	calls chan metadata.MD
}

func (s *sidecar) SaveState(ctx context.Context, _ *pb.SaveStateRequest) (*emptypb.Empty, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.calls <- md
	return &emptypb.Empty{}, nil
}

func main() { reprokit.Main(run) }

func run() error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s := &sidecar{calls: make(chan metadata.MD, 1)}
	srv := grpc.NewServer()
	pb.RegisterDaprServer(srv, s)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	lost := false
	for _, token := range []string{"", "s3cret"} {
		c, err := dapr.NewClientWithAddressContext(context.Background(), lis.Addr().String())
		if err != nil {
			return err
		}
		c.WithAuthToken(token) // what DAPR_API_TOKEN does at NewClient
		ctx := c.WithTraceID(context.Background(), traceparent)
		err = c.SaveState(ctx, "statestore", "k", []byte("v"), nil)
		c.Close()
		if err != nil {
			return err
		}
		md := <-s.calls
		got := md.Get("traceparent")
		verdict := "kept"
		if len(got) != 1 || got[0] != traceparent {
			verdict, lost = "LOST", true
		}
		fmt.Printf("API token %-8q: the sidecar got dapr-api-token %q, traceparent %q: the trace context was %s\n",
			token, md.Get("dapr-api-token"), got, verdict)
	}
	if lost {
		return errors.New("the client's token interceptor replaced the call's outgoing metadata")
	}
	return nil
}
