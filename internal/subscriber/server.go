package subscriber

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"

	"github.com/dapr/go-sdk/service/common"
	daprhttp "github.com/dapr/go-sdk/service/http"
	"github.com/go-chi/chi/v5"

	"dapr-pub-sub/internal/logging"
)

// Routes Dapr calls for each subscription.
const (
	OrdersRoute     = "/orders"
	DeadLetterRoute = "/orders-deadletter"
)

// NewService builds the Dapr HTTP service: /healthz, Dapr's /dapr/subscribe
// (answered by the SDK from the subscriptions added here) and one route per
// topic. It does not listen until Start is called.
func NewService(cfg Config, h *Handler) (common.Service, error) {
	mux := chi.NewRouter()
	mux.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	s := daprhttp.NewServiceWithMux(cfg.ListenAddr(), mux)
	subs := []struct {
		sub *common.Subscription
		fn  common.TopicEventHandler
	}{
		{&common.Subscription{PubsubName: cfg.PubSub, Topic: cfg.Topic, Route: OrdersRoute, DeadLetterTopic: cfg.DeadLetterTopic}, h.HandleOrder},
		{&common.Subscription{PubsubName: cfg.PubSub, Topic: cfg.DeadLetterTopic, Route: DeadLetterRoute}, h.HandleDeadLetter},
	}
	for _, s2 := range subs {
		if err := s.AddTopicEventHandler(s2.sub, s2.fn); err != nil {
			return nil, fmt.Errorf("subscribe %s/%s: %w", s2.sub.PubsubName, s2.sub.Topic, err)
		}
	}
	return s, nil
}

// Run is the subscriber program. It serves until ctx is done, then shuts the
// server down gracefully (in-flight deliveries finish, bounded by the SDK's
// 5 s) and returns nil. It returns an error if it cannot listen.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := ParseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := logging.New(stderr, getenv("LOG_FORMAT"), cfg.LogLevel)
	svc, err := NewService(cfg, NewHandler(stdout, log))
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- svc.Start() }()
	log.Info("Subscriber listening", "address", cfg.ListenAddr(),
		"pubsub", cfg.PubSub, "topic", cfg.Topic, "dead_letter_topic", cfg.DeadLetterTopic)
	select {
	case err := <-served:
		if err == nil || errors.Is(err, http.ErrServerClosed) {
			return errNotServing
		}
		return fmt.Errorf("listen on %s (is another subscriber running? set -port or APP_PORT): %w", cfg.ListenAddr(), err)
	case <-ctx.Done():
	}
	log.Info("Shutting down")
	if err := svc.GracefulStop(); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
