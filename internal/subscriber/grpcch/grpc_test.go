package grpcch

import (
	"net"
	"testing"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/handler/handlertest"
)

// TestGRPCChannel drives the gRPC app service as daprd does: it lists the
// subscriptions and probes health without the token, and delivers with it;
// a delivery without the token is refused with a code daprd retries.
func TestGRPCChannel(t *testing.T) {
	f := handlertest.New(handler.Faults{})
	subscriptions := f.H.Subscriptions(handler.Topics{PubSub: "pubsub", Topic: "orders", DeadLetterTopic: "orders-deadletter", Metadata: map[string]string{"queueType": "quorum", "rawPayload": "false"}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := new(handler.Readiness)
	svc, err := NewService(lis, Options{AppToken: "tok", Subscriptions: subscriptions, Ready: ready, Log: f.H.Log})
	if err != nil {
		t.Fatal(err)
	}
	go svc.Start() //nolint:errcheck // Stop ends it
	t.Cleanup(func() { _ = svc.Stop() })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	app := runtimev1pb.NewAppCallbackClient(conn)
	ctx := t.Context()

	subs, err := app.ListTopicSubscriptions(ctx, &emptypb.Empty{})
	if err != nil {
		t.Fatalf("ListTopicSubscriptions without the token (as daprd calls it): %v", err)
	}
	if !ready.Subscribed() {
		t.Error("listing the subscriptions did not mark the app subscribed")
	}
	byTopic := map[string]*runtimev1pb.TopicSubscription{}
	for _, s := range subs.GetSubscriptions() {
		byTopic[s.GetTopic()] = s
	}
	if s := byTopic["orders"]; s == nil || s.GetDeadLetterTopic() != "orders-deadletter" {
		t.Errorf("orders subscription = %v, want one that dead-letters to orders-deadletter", s)
	}
	if s := byTopic["orders-deadletter"]; s == nil || s.GetMetadata()["rawPayload"] != "true" || s.GetMetadata()["queueType"] != "quorum" {
		t.Errorf("dead-letter subscription = %v, want rawPayload and the configured queueType", s)
	}
	if s := byTopic["orders"]; s == nil || s.GetMetadata()["queueType"] != "quorum" {
		t.Errorf("orders subscription = %v, want the configured queueType", s)
	}
	if _, err := runtimev1pb.NewAppCallbackHealthCheckClient(conn).HealthCheck(ctx, &emptypb.Empty{}); err != nil {
		t.Errorf("HealthCheck without the token: %v", err)
	}

	event := &runtimev1pb.TopicEventRequest{
		Id: "order-7", Source: "publisher", Type: "com.dapr.event.sent", SpecVersion: "1.0",
		DataContentType: "application/json", Data: []byte(`{"id":7,"message":"hi"}`),
		Topic: "orders", PubsubName: "pubsub", Path: handler.OrdersRoute,
	}
	if _, err := app.OnTopicEvent(ctx, event); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("delivery without the token = %v, want Unauthenticated (retried by daprd)", err)
	}
	if f.Out.String() != "" {
		t.Fatalf("a refused delivery was processed: %q", f.Out.String())
	}
	authed := metadata.AppendToOutgoingContext(ctx, "dapr-api-token", "tok")
	res, err := app.OnTopicEvent(authed, event)
	if err != nil || res.GetStatus() != runtimev1pb.TopicEventResponse_SUCCESS {
		t.Fatalf("delivery with the token = %v, %v; want SUCCESS", res, err)
	}
	if want := "Received message: {\"id\": 7, \"message\": \"hi\"}\n"; f.Out.String() != want {
		t.Errorf("output %q, want %q", f.Out.String(), want)
	}
}
