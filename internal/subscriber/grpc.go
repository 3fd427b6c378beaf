package subscriber

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

// Delivery channels: how the subscriber's daprd hands it each event.
const (
	// ChannelGRPC is Dapr's gRPC app channel (daprd --app-protocol grpc):
	// daprd calls OnTopicEvent on the app's gRPC server. Every transport
	// error is retried by daprd (postman/grpc), so an order the app never
	// saw is never acknowledged. The default.
	ChannelGRPC = "grpc"
	// ChannelHTTP is the original example's shape: daprd POSTs each event to the app's
	// route. Its shared middleware pipeline can report a failed delivery as
	// an empty 200, which daprd acknowledges (see the README's known issue).
	ChannelHTTP = "http"
)

// Channels lists the channels, the default first.
var Channels = []string{ChannelGRPC, ChannelStream, ChannelHTTP}

// newGRPCService builds the Dapr gRPC app service of the grpc channel on
// lis: the same subscriptions and handlers as the HTTP routes, the health
// check RPC daprd's app health check calls, and interceptors that require
// the app token (all but the health check), put daprd's W3C trace context
// into the handler's context, and mark the app subscribed once daprd has
// listed its subscriptions. It serves when Start is called.
func newGRPCService(lis net.Listener, cfg Config, h *handler.Handler, ready *handler.Readiness, log *slog.Logger) (common.Service, error) {
	svc := daprgrpc.NewServiceWithListener(lis,
		grpc.MaxRecvMsgSize(handler.MaxBodyBytes),
		grpc.ChainUnaryInterceptor(grpcAppToken(cfg.AppToken, log), grpcTraceContext, grpcSubscribed(ready)))
	if err := handler.AddTopicEventHandlers(svc, h.Subscriptions(cfg.Topics())); err != nil {
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
