package handler

import (
	"fmt"
	"maps"

	"github.com/dapr/go-sdk/service/common"
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
func (h *Handler) Subscriptions(t Topics) []Subscription {
	return []Subscription{
		// In bulk mode httpch answers /dapr/subscribe itself; the route
		// stays, for a delivery already on its way.
		{&common.Subscription{PubsubName: t.PubSub, Topic: t.Topic, Route: OrdersRoute, DeadLetterTopic: t.DeadLetterTopic, Metadata: subscriptionMetadata(t)}, h.HandleOrder},
		{&common.Subscription{PubsubName: t.PubSub, Topic: t.DeadLetterTopic, Route: DeadLetterRoute, Metadata: subscriptionMetadata(t, "rawPayload", "true")}, h.HandleDeadLetter},
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
