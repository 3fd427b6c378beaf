// Package subscriber is the order subscriber program: it takes each order
// event its Dapr sidecar delivers — on the sidecar's gRPC app channel, a
// streaming subscription or HTTP — records the order once in the state
// store, prints it, and keeps the dead letters. Run wires the parts
// together, each a package of its own: handler (what a delivery does),
// the transports, and the live page.
package subscriber

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"

	"dapr-pub-sub/internal/logging"
	"dapr-pub-sub/internal/sidecar"
	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/subscriber/grpcch"
	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/httpch"
	"dapr-pub-sub/internal/subscriber/live"
	"dapr-pub-sub/internal/subscriber/streamch"
	"dapr-pub-sub/internal/tracing"
)

// NewHTTPService is the HTTP service Run serves for cfg (httpch): on the
// http channel daprd delivers h's subscriptions to it (in batches in the
// throughput mode); on every channel it answers the probes (ready; nil
// for one that asks no one), /metrics, /stats and page's routes (nil for
// no page), all but the probes and the scrape behind cfg.AppToken. It does
// not listen until Start is called.
func NewHTTPService(cfg Config, h *handler.Handler, ready *handler.Readiness, page httpch.Page, log *slog.Logger) (common.Service, error) {
	o := httpch.Options{Address: cfg.Address, Port: cfg.Port, AppToken: cfg.AppToken, Handler: h, Ready: ready, Page: page, Log: log}
	if cfg.Channel != ChannelGRPC && cfg.Channel != ChannelStream {
		// daprd delivers on HTTP; on gRPC or a stream, this service is for
		// people and probes.
		o.Subscriptions, o.Bulk = h.Subscriptions(cfg.Topics()), cfg.Bulk
	}
	return httpch.NewService(o)
}

// Run is the subscriber program. It serves until ctx is done, then shuts
// down gracefully — it stops accepting deliveries and lets those in flight
// finish, bounded by the SDK's 5 s, the same as the handler timeout — and
// returns nil. It returns an error if it cannot listen.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := ParseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	client, err := sidecar.Dial(cfg.DaprAddress, cfg.DaprAPIToken, log)
	if err != nil {
		return err
	}
	defer client.Close()
	st := store.New(client, cfg.StateStore, cfg.AppID).WithRecordStore(cfg.RecordStore).WithRetention(cfg.RetentionWindow, cfg.DeadLetterRetention).
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
	if cfg.PprofAddress != "" {
		if err := servePprof(ctx, cfg.PprofAddress, log); err != nil {
			return err
		}
	}
	feed := live.NewFeed(0, 0)
	h := handler.New(handler.Config{
		Store: st, Out: stdout, Log: log, Metrics: handler.NewMetrics(), Tracer: tp.Tracer("dapr-pub-sub/subscriber"),
		Timeout: cfg.Timeout, PubSub: cfg.PubSub, Topic: cfg.Topic, Faults: cfg.Faults,
		Observe: feed.Publish,
	})
	if cfg.Ordered {
		h.Lives = st.Lives(cfg.HoldLimit, cfg.PubSub, cfg.Topic)
		go sweep(ctx, h, cfg.GapTimeout, log)
	}
	page := live.New(live.Options{Feed: feed, Stats: &h.Stats, Store: st, BacklogURL: cfg.BacklogURL, Log: log})
	ready := handler.NewReadiness(daprdSubscribed(client, cfg), st.Ping)
	stopDeliveries := func() error { return nil }
	svc, err := NewHTTPService(cfg, h, ready, page, log)
	if err != nil {
		return err
	}
	served := make(chan error, 2)
	if cfg.Channel == ChannelGRPC {
		lis, err := net.Listen("tcp", cfg.GRPCListenAddr())
		if err != nil {
			return fmt.Errorf("listen on %s for daprd's gRPC deliveries (set -grpc-port or APP_GRPC_PORT): %w", cfg.GRPCListenAddr(), err)
		}
		gsvc, err := grpcch.NewService(lis, grpcch.Options{AppToken: cfg.AppToken, Subscriptions: h.Subscriptions(cfg.Topics()), Ready: ready, Log: log})
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
		ss := streamch.New(streamch.Options{Client: client, Subscriptions: h.Subscriptions(cfg.Topics()), Workers: cfg.StreamWorkers, Ready: ready, Log: log})
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
		"state_store", cfg.StateStore, "record_store", cmp.Or(cfg.RecordStore, cfg.StateStore), "sidecar", cfg.DaprAddress, "exporting_traces", tp.Exporting,
		"bulk_max_messages", cfg.Bulk.MaxMessages, "ordered", cfg.Ordered)
	if cfg.AppToken == "" {
		log.Warn("APP_API_TOKEN is not set: any local process can call the subscriber's routes")
	}
	if cfg.Faults != (handler.Faults{}) {
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

// sweep gives up on the ordered mode's gaps that have not filled within
// gap (store.Lives.Sweep), every gap/4 (1 s to 30 s), until ctx is done.
// Every subscriber instance sweeps; the store keeps each dead letter once.
func sweep(ctx context.Context, h *handler.Handler, gap time.Duration, log *slog.Logger) {
	every := min(max(gap/4, time.Second), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sw, err := h.Lives.Sweep(ctx, gap)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("Looking for held events whose gap did not fill failed; trying again", "err", err, "in", every.String())
			}
			continue
		}
		for _, x := range sw.Expired {
			h.Stats.DeadLetters.Add(1)
			log.Error("Dead letter", "event_id", x.EventID, "reason", x.Reason)
		}
		h.Metrics.ObserveSweep(sw.Held, sw.Oldest, len(sw.Expired))
		h.Stats.HeldNow.Store(int64(sw.Held))
		h.Stats.OldestHeldMillis.Store(sw.Oldest.Milliseconds())
	}
}
