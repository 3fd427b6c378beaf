package subscriber

import (
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

	"github.com/dapr/go-sdk/service/common"
	daprhttp "github.com/dapr/go-sdk/service/http"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

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
// With cfg.AppToken set, every route but /healthz requires it (401 else).
// Bodies are limited to MaxBodyBytes. WithLivePage adds the live page.
func NewService(cfg Config, h *Handler, log *slog.Logger, ready func(context.Context) error, opts ...ServiceOption) (common.Service, error) {
	mux := chi.NewRouter()
	live := newLivePage(cfg, opts)
	mux.Use(requireAppToken(cfg.AppToken, log, live.access, "/healthz", "/readyz", "/metrics"))
	mux.Use(traceContext)
	var o serviceOptions
	for _, opt := range opts {
		opt(&o)
	}
	subscribed := o.subscribed
	if subscribed == nil {
		subscribed = new(atomic.Bool)
	}
	mux.Use(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/dapr/subscribe" {
				subscribed.Store(true)
				if cfg.Bulk.MaxMessages > 0 {
					w.Header().Set("Content-Type", "application/json")
					_ = json.NewEncoder(w).Encode(bulkSubscriptions(cfg))
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	mux.Use(func(next http.Handler) http.Handler {
		guarded := guardBody(log, next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == OrdersRoute {
				guarded.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	mux.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !subscribed.Load() {
			http.Error(w, "not subscribed yet: daprd has not read /dapr/subscribe", http.StatusServiceUnavailable)
			return
		}
		if ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := ready(ctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	if h.Metrics != nil {
		mux.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(h.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	mux.Get("/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&h.Stats)
	})
	live.mount(mux, h, log)
	s := daprhttp.NewServiceWithMux(cfg.ListenAddr(), mux)
	if cfg.Channel == ChannelGRPC {
		return s, nil // daprd delivers to the gRPC service; this service is for people and probes
	}
	if cfg.Bulk.MaxMessages > 0 {
		mux.Method(http.MethodPost, BulkOrdersRoute, handleBulk(h, cfg.Bulk, log))
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
		{&common.Subscription{PubsubName: cfg.PubSub, Topic: cfg.DeadLetterTopic, Route: DeadLetterRoute, Metadata: map[string]string{"rawPayload": "true"}}, h.HandleDeadLetter},
		// In bulk mode /dapr/subscribe is answered by the middleware; the
		// route stays, for a delivery already on its way.
		{&common.Subscription{PubsubName: cfg.PubSub, Topic: cfg.Topic, Route: OrdersRoute, DeadLetterTopic: cfg.DeadLetterTopic}, h.HandleOrder},
	}
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
	st := store.New(client, cfg.StateStore, cfg.AppID)
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
	feed := NewFeed(0, 0)
	h := NewHandler(HandlerConfig{
		Store: st, Out: stdout, Log: log, Metrics: NewMetrics(), Tracer: tp.Tracer("dapr-pub-sub/subscriber"),
		Timeout: cfg.Timeout, PubSub: cfg.PubSub, Topic: cfg.Topic, Faults: cfg.Faults,
		Observe: feed.Publish,
	})
	var subscribed atomic.Bool
	stopDeliveries := func() error { return nil }
	svc, err := NewService(cfg, h, log, st.Ping, WithLivePage(feed), withSubscribed(&subscribed))
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
