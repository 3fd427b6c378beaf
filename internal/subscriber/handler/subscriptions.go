package handler

import (
	"context"
	"fmt"
	"maps"

	"github.com/dapr/go-sdk/service/common"

	"dapr-pub-sub/internal/order"
)

// Routes Dapr calls for each subscription (on the gRPC channels, the path
// a delivery names).
const (
	OrdersRoute     = "/orders"
	DeadLetterRoute = "/orders-deadletter"
)

// Topics are what the app subscribes to.
type Topics struct {
	PubSub          string // the pub/sub component
	Topic           string // the orders
	DeadLetterTopic string // where daprd sends the orders dropped
	// Metadata is added to every subscription's metadata
	// (SUBSCRIPTION_METADATA); nil for none.
	Metadata map[string]string
	// RouteByType adds the ordered mode's routing rules: daprd sends each
	// event type after an order's first to a route of its own (TypeRoutes),
	// choosing by a CEL rule on the event's data; OrdersRoute takes the
	// rest. Every route has the same handler: the sequencer decides. Only
	// for a channel whose subscription carries rules (grpc, http without
	// bulk): daprd has none on streams, and the SDK cannot declare bulk
	// delivery with them.
	RouteByType bool
}

// TypeRoute is an event type's route in the ordered mode's rules.
type TypeRoute struct{ Type, Path string }

// TypeRoutes are the ordered mode's routes by event type, in the order of
// their rules' priority (order.created, and anything else, takes
// OrdersRoute).
var TypeRoutes = []TypeRoute{
	{order.TypePaid, OrdersRoute + "/paid"},
	{order.TypeShipped, OrdersRoute + "/shipped"},
	{order.TypeDelivered, OrdersRoute + "/delivered"},
	{order.TypeCancelled, OrdersRoute + "/cancelled"},
}

// TypeMatch is the CEL rule that picks event type typ's route. daprd
// evaluates it on the CloudEvent as a map; a missing field is an error
// there (the event would go to the dead letters, not to the default
// route), so every step is guarded: data absent (data_base64), data a
// string (published without a JSON content type), no "type" field —
// each is false, and the event takes OrdersRoute.
func TypeMatch(typ string) string {
	return `has(event.data) && type(event.data) == map && "type" in event.data && event.data.type == "` + typ + `"`
}

// Subscription is one topic the app subscribes to, as the Go SDK's
// services take it, and its handler.
type Subscription struct {
	Sub    *common.Subscription
	Handle common.TopicEventHandler
}

// Subscriptions are the app's topics, the same on every transport: the
// orders, whose subscription names the dead-letter topic and whose
// handler is HandleOrder, then the dead letters, asked for as raw
// payloads, so that any message that ends up there reaches
// HandleDeadLetter as it is.
//
// With t.RouteByType the orders topic also has a subscription per
// TypeRoutes entry, each a rule (TypeMatch) of its own priority; the SDK
// folds them into the one subscription daprd sees, whose dead-letter topic
// and metadata are the first's.
func (h *Handler) Subscriptions(t Topics) []Subscription {
	orders := h.HandleOrder
	if t.RouteByType {
		orders = h.routed(OrdersRoute)
	}
	subs := []Subscription{
		// In bulk mode httpch answers /dapr/subscribe itself; the route
		// stays, for a delivery already on its way.
		{&common.Subscription{PubsubName: t.PubSub, Topic: t.Topic, Route: OrdersRoute, DeadLetterTopic: t.DeadLetterTopic, Metadata: subscriptionMetadata(t)}, orders},
	}
	if t.RouteByType {
		for i, r := range TypeRoutes {
			subs = append(subs, Subscription{&common.Subscription{PubsubName: t.PubSub, Topic: t.Topic, Route: r.Path, Match: TypeMatch(r.Type), Priority: i + 1,
				DeadLetterTopic: t.DeadLetterTopic, Metadata: subscriptionMetadata(t)}, h.routed(r.Path)})
		}
	}
	return append(subs, Subscription{&common.Subscription{PubsubName: t.PubSub, Topic: t.DeadLetterTopic, Route: DeadLetterRoute, Metadata: subscriptionMetadata(t, "rawPayload", "true")}, h.HandleDeadLetter})
}

// routed is HandleOrder for the deliveries daprd routed to route, counted
// by it (orders_routed_deliveries_total).
func (h *Handler) routed(route string) common.TopicEventHandler {
	return func(ctx context.Context, e *common.TopicEvent) (bool, error) {
		h.Metrics.routedTo(route)
		return h.HandleOrder(ctx, e)
	}
}

// AddTopicEventHandlers adds each of subs to svc, an SDK service.
func AddTopicEventHandlers(svc common.Service, subs []Subscription) error {
	for _, s := range subs {
		if err := svc.AddTopicEventHandler(s.Sub, s.Handle); err != nil {
			return fmt.Errorf("subscribe %s/%s: %w", s.Sub.PubsubName, s.Sub.Topic, err)
		}
	}
	return nil
}

// subscriptionMetadata is a subscription's metadata: t's Metadata, then
// the subscription's own pairs (name, value, …), which win. nil when
// there is none.
func subscriptionMetadata(t Topics, own ...string) map[string]string {
	if len(t.Metadata) == 0 && len(own) == 0 {
		return nil
	}
	md := maps.Clone(t.Metadata)
	if md == nil {
		md = map[string]string{}
	}
	for i := 0; i+1 < len(own); i += 2 {
		md[own[i]] = own[i+1]
	}
	return md
}
