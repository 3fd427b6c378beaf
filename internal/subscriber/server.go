package subscriber

import (
	"maps"

	"dapr-pub-sub/internal/appenv"

	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
	daprhttp "github.com/dapr/go-sdk/service/http"
	"github.com/go-chi/chi/v5"

	"dapr-pub-sub/internal/logging"
	"dapr-pub-sub/internal/sidecar"
	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/tracing"
)

// Routes Dapr calls for each subscription.
const (
	OrdersRoute     = "/orders"
	DeadLetterRoute = "/orders-deadletter"
)

// NewService builds the Dapr HTTP service: /healthz (liveness: the process
// serves), /readyz (readiness: daprd has read the subscriptions and ready()
// passes), /metrics (Prometheus), /stats, Dapr's /dapr/subscribe (answered
// by the SDK from the subscriptions added here) and one route per topic. It
// does not listen until Start is called. ready may be nil.
//
// The orders subscription names the dead-letter topic; the dead-letter
// subscription asks for raw payloads, so that any message that ends up
// there reaches the handler as it is.
//
// routes.go lists the routes and who may call them. With cfg.AppToken set,
// every route but the open ones requires it (401 else).
// Bodies are limited to MaxBodyBytes. WithLivePage adds the live page.
func NewService(cfg Config, h *Handler, log *slog.Logger, ready func(context.Context) error, opts ...ServiceOption) (common.Service, error) {
	var o serviceOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.subscribed == nil {
		o.subscribed = new(atomic.Bool)
	}
	mux := chi.NewRouter()
	routes(mux, cfg, h, log, ready, newLivePage(cfg, o), o.subscribed, o.inDaprd)
	s := daprhttp.NewServiceWithMux(cfg.ListenAddr(), mux)
	if cfg.Channel == ChannelGRPC || cfg.Channel == ChannelStream {
		return s, nil // daprd delivers on gRPC or a stream; this service is for people and probes
	}
	for _, sub := range subscriptions(cfg, h) {
		if err := s.AddTopicEventHandler(sub.sub, sub.fn); err != nil {
			return nil, fmt.Errorf("subscribe %s/%s: %w", sub.sub.PubsubName, sub.sub.Topic, err)
		}
	}
	return s, nil
}

// subscription is one topic the app subscribes to and its handler.
type subscription struct {
	sub *common.Subscription
	fn  common.TopicEventHandler
}

// subscriptions are the app's topics on every channel: the orders, whose
// subscription names the dead-letter topic, and the dead letters, asked for
// as raw payloads, so that any message that ends up there reaches the
// handler as it is.
func subscriptions(cfg Config, h *Handler) []subscription {
	return []subscription{
		{&common.Subscription{PubsubName: cfg.PubSub, Topic: cfg.DeadLetterTopic, Route: DeadLetterRoute, Metadata: subscriptionMetadata(cfg, "rawPayload", "true")}, h.HandleDeadLetter},
		// In bulk mode /dapr/subscribe is answered by the middleware; the
		// route stays, for a delivery already on its way.
		{&common.Subscription{PubsubName: cfg.PubSub, Topic: cfg.Topic, Route: OrdersRoute, DeadLetterTopic: cfg.DeadLetterTopic, Metadata: subscriptionMetadata(cfg)}, h.HandleOrder},
	}
}

// subscriptionMetadata is a subscription's metadata: cfg's
// SubscriptionMetadata, then the subscription's own pairs (name, value,
// …), which win. nil when there is none.
func subscriptionMetadata(cfg Config, own ...string) map[string]string {
	if len(cfg.SubscriptionMetadata) == 0 && len(own) == 0 {
		return nil
	}
	md := maps.Clone(cfg.SubscriptionMetadata)
	if md == nil {
		md = map[string]string{}
	}
	for i := 0; i+1 < len(own); i += 2 {
		md[own[i]] = own[i+1]
	}
	return md
}

// Run is the subscriber program. It serves until ctx is done, then shuts
// down gracefully — it stops accepting deliveries and lets those in flight
// finish, bounded by the SDK's 5 s, the same as the handler timeout — and
// returns nil. It returns an error if it cannot listen.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := ParseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := logging.New(stderr, getenv(appenv.LogFormat), cfg.LogLevel)
	client, err := sidecar.Dial(cfg.DaprAddress, getenv(appenv.DaprAPIToken), log)
	if err != nil {
		return err
	}
	defer client.Close()
	st := store.New(client, cfg.StateStore, cfg.AppID).WithRetention(cfg.RetentionWindow, cfg.DeadLetterRetention).
		WithBatching(cfg.RecordBatch, cfg.RecordFlushers)
	tp, err := tracing.Setup(ctx, cfg.AppID, getenv)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			log.Warn("Flushing traces failed", "err", err)
		}
	}()
	if addr := getenv(appenv.PprofAddress); addr != "" {
		if err := servePprof(ctx, addr, log); err != nil {
			return err
		}
	}
	feed := NewFeed(0, 0)
	h := NewHandler(HandlerConfig{
		Store: st, Out: stdout, Log: log, Metrics: NewMetrics(), Tracer: tp.Tracer("dapr-pub-sub/subscriber"),
		Timeout: cfg.Timeout, PubSub: cfg.PubSub, Topic: cfg.Topic, Faults: cfg.Faults,
		Observe: feed.Publish,
	})
	var subscribed atomic.Bool
	stopDeliveries := func() error { return nil }
	svc, err := NewService(cfg, h, log, st.Ping, WithLivePage(feed), withSubscribed(&subscribed, daprdSubscribed(client, cfg)))
	if err != nil {
		return err
	}
	served := make(chan error, 2)
	if cfg.Channel == ChannelGRPC {
		lis, err := net.Listen("tcp", cfg.GRPCListenAddr())
		if err != nil {
			return fmt.Errorf("listen on %s for daprd's gRPC deliveries (set -grpc-port or APP_GRPC_PORT): %w", cfg.GRPCListenAddr(), err)
		}
		gsvc, err := newGRPCService(lis, cfg, h, &subscribed, log)
		if err != nil {
			lis.Close()
			return err
		}
		go func() { served <- gsvc.Start() }()
		// On shutdown the deliveries in flight finish before the HTTP
		// side, which answers the probes until then, goes.
		stopDeliveries = gsvc.GracefulStop
	}
	refused := make(chan error, 1)
	if cfg.Channel == ChannelStream {
		sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		ss := newStreams(client, subscriptions(cfg, h), cfg.StreamWorkers, subscribed.Store, log)
		go func() {
			defer close(done)
			if err := ss.Run(sctx); err != nil {
				refused <- err
			}
		}()
		stopDeliveries = func() error { stop(); <-done; return nil }
	}
	go func() { served <- svc.Start() }()
	log.Info("Subscriber listening", "address", cfg.ListenAddr(), "channel", cfg.Channel, "grpc_address", grpcAddr(cfg), "app_id", cfg.AppID,
		"pubsub", cfg.PubSub, "topic", cfg.Topic, "dead_letter_topic", cfg.DeadLetterTopic,
		"state_store", cfg.StateStore, "sidecar", cfg.DaprAddress, "exporting_traces", tp.Exporting,
		"bulk_max_messages", cfg.Bulk.MaxMessages)
	if cfg.AppToken == "" {
		log.Warn("APP_API_TOKEN is not set: any local process can call the subscriber's routes")
	}
	if cfg.Faults != (Faults{}) {
		log.Warn("Fault injection is on", "fail_first_every", cfg.Faults.FailFirstEvery, "delay", cfg.Faults.Delay.String(), "reject_from", cfg.Faults.RejectFrom, "always_fail", cfg.Faults.AlwaysFail)
	}
	select {
	case err := <-refused:
		if serr := svc.GracefulStop(); serr != nil {
			log.Warn("Shutdown", "err", serr)
		}
		return err
	case err := <-served:
		if err == nil || errors.Is(err, http.ErrServerClosed) {
			return errors.New("subscriber server stopped")
		}
		return fmt.Errorf("serve on %s (is another subscriber running? set -port or APP_PORT): %w", cfg.ListenAddr(), err)
	case <-ctx.Done():
	}
	log.Info("Shutting down: finishing deliveries in flight")
	feed.Close() // ends the live page's streams, which Shutdown would wait for
	if err := stopDeliveries(); err != nil {
		log.Warn("gRPC shutdown", "err", err)
	}
	if err := svc.GracefulStop(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	stats, _ := json.Marshal(&h.Stats)
	log.Info("Stopped", "stats", string(stats))
	return nil
}

// daprdSubscribed asks daprd (its metadata API) whether it holds the
// app's subscription to the orders topic: true when daprd read it before
// this process started — the kubelet restarts an app container alone, and
// daprd does not ask the app again.
func daprdSubscribed(client dapr.Client, cfg Config) func(context.Context) bool {
	return func(ctx context.Context) bool {
		md, err := client.GetMetadata(ctx)
		if err != nil {
			return false
		}
		for _, s := range md.Subscriptions {
			if s.PubsubName == cfg.PubSub && s.Topic == cfg.Topic {
				return true
			}
		}
		return false
	}
}
