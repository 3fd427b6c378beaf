// Package sidecar connects an app to its Dapr sidecar's gRPC API with the
// Dapr Go SDK.
package sidecar

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"dapr-pub-sub/internal/appenv"
	"dapr-pub-sub/internal/tracing"
)

// Address is the sidecar's gRPC address as the Dapr SDKs find it:
// DAPR_GRPC_ENDPOINT, else DAPR_GRPC_PORT on 127.0.0.1, else port 50001.
func Address(getenv func(string) string) string {
	if v := getenv(appenv.DaprGRPCEndpoint); v != "" {
		return strings.TrimPrefix(strings.TrimPrefix(v, "http://"), "dns:///")
	}
	if p := getenv(appenv.DaprGRPCPort); p != "" {
		return "127.0.0.1:" + p
	}
	return "127.0.0.1:50001"
}

// Dial returns an SDK client for the sidecar at address without waiting for
// it: the connection is made on first use and remade after the sidecar
// restarts, so an app can start before its sidecar (daprd waits for the
// app's port) and survive the sidecar's restarts. Every call carries
// apiToken (DAPR_API_TOKEN) in the dapr-api-token header when it is set
// (the SDK only does that on connections it dials itself, and there it
// replaces the call's other metadata), and the trace context of the
// span in its context as traceparent and tracestate, so that the
// sidecar's spans of an order's state calls are in the order's trace. The SDK's own log
// lines, which it prints to stdout, go to log at debug level instead.
func Dial(address, apiToken string, log *slog.Logger) (dapr.Client, error) {
	dapr.SetLogger(slog.NewLogLogger(log.Handler(), slog.LevelDebug))
	conn, err := grpc.NewClient(address,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(tracing.Outgoing(withToken(ctx, apiToken)), method, req, reply, cc, opts...)
		}),
		// Streams too: the subscriber's streaming subscriptions.
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(tracing.Outgoing(withToken(ctx, apiToken)), desc, cc, method, opts...)
		}),
		// Reconnect within 2 s of a sidecar restart, not gRPC's default 120 s.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		}))
	if err != nil {
		return nil, fmt.Errorf("sidecar address %q: %w", address, err)
	}
	return dapr.NewClientWithConnection(conn), nil
}

// withToken adds apiToken, when set, to ctx's outgoing metadata.
func withToken(ctx context.Context, apiToken string) context.Context {
	if apiToken == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "dapr-api-token", apiToken)
}
