// Package grpcch is the subscriber's grpc channel (daprd --app-protocol
// grpc): the Dapr Go SDK's service/grpc, on which daprd calls
// OnTopicEvent with each event, and its interceptors — the app token,
// daprd's trace context, and the mark that daprd has listed the
// subscriptions. It imports handler and no other part of the subscriber.
package grpcch

import (
	"context"
	"crypto/subtle"
	"log/slog"
	"net"
	"strings"

	"github.com/dapr/go-sdk/service/common"
	daprgrpc "github.com/dapr/go-sdk/service/grpc"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/tracing"
)

// Options are what NewService needs.
type Options struct {
	// AppToken, when set, is required on every call but the health check
	// and ListTopicSubscriptions (see grpcAppToken); "" turns the check
	// off.
	AppToken string
	// Subscriptions are listed to daprd, and each gets its deliveries.
	Subscriptions []handler.Subscription
	// Ready is marked subscribed when daprd lists Subscriptions; nil for
	// none.
	Ready *handler.Readiness
	Log   *slog.Logger
}

// NewService builds the Dapr gRPC app service of the grpc channel on lis:
// o's subscriptions and handlers (the same as the HTTP channel's), the
// health check RPC daprd's app health check calls, and interceptors that
// require the app token (all but the health check), put daprd's W3C trace
// context into the handler's context, and mark the app subscribed once
// daprd has listed its subscriptions. A message may be up to
// handler.MaxBodyBytes. It serves when Start is called.
func NewService(lis net.Listener, o Options) (common.Service, error) {
	if o.Ready == nil {
		o.Ready = new(handler.Readiness)
	}
	svc := daprgrpc.NewServiceWithListener(lis,
		grpc.MaxRecvMsgSize(handler.MaxBodyBytes),
		grpc.ChainUnaryInterceptor(grpcAppToken(o.AppToken, o.Log), grpcTraceContext, grpcSubscribed(o.Ready)))
	if err := handler.AddTopicEventHandlers(svc, o.Subscriptions); err != nil {
		return nil, err
	}
	if err := svc.AddHealthCheckHandler("", func(context.Context) error { return nil }); err != nil {
		return nil, err
	}
	return svc, nil
}

// grpcAppToken refuses, with Unauthenticated (which daprd retries), every
// call that lacks the dapr-api-token daprd sends when APP_API_TOKEN is set,
// but two that daprd makes without it: the health check, and
// ListTopicSubscriptions (daprd 1.16–1.18 pkg/runtime/pubsub/subscriptions.go
// GetSubscriptionsGRPC does not add the token, unlike every delivery), which
// only tells what the app subscribes to. The SDK's gRPC service checks the
// token on service invocation alone.
func grpcAppToken(token string, log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		if token == "" || strings.HasSuffix(info.FullMethod, "/HealthCheck") || strings.HasSuffix(info.FullMethod, "/ListTopicSubscriptions") {
			return next(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		got := md.Get("dapr-api-token")
		if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(token)) != 1 {
			log.Warn("Refused a gRPC call without the app token", "method", info.FullMethod)
			return nil, status.Error(codes.Unauthenticated, "missing or wrong dapr-api-token")
		}
		return next(ctx, req)
	}
}

// grpcTraceContext puts the traceparent daprd sends as gRPC metadata into
// the context, where the handler's span picks it up as its parent.
func grpcTraceContext(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok && len(md.Get("traceparent")) > 0 {
		ctx = tracing.Propagator.Extract(ctx, mdCarrier(md))
	}
	return next(ctx, req)
}

// grpcSubscribed marks the app subscribed when daprd lists its
// subscriptions, as /dapr/subscribe does on the HTTP channel.
func grpcSubscribed(ready *handler.Readiness) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		if strings.HasSuffix(info.FullMethod, "/ListTopicSubscriptions") {
			ready.MarkSubscribed()
		}
		return next(ctx, req)
	}
}

// mdCarrier reads gRPC metadata as a propagation.TextMapCarrier.
type mdCarrier metadata.MD

var _ propagation.TextMapCarrier = mdCarrier(nil)

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }
func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
