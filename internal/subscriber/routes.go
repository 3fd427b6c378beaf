package subscriber

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The subscriber's HTTP routes, by who may call them. The SDK adds Dapr's
// /dapr/subscribe and the topic routes (OrdersRoute, DeadLetterRoute) to
// the same mux on the http channel; they, /stats and BulkOrdersRoute take
// the app token.
const (
	healthzRoute   = "/healthz"        // open: liveness, the process serves
	readyzRoute    = "/readyz"         // open: readiness, subscribed and the state store answers
	metricsRoute   = "/metrics"        // open: Prometheus
	statsRoute     = "/stats"          // token: counts as JSON
	subscribeRoute = "/dapr/subscribe" // token: daprd reads the subscriptions (http channel)
)

// openRoutes take no token: probes and scrapers cannot send it.
var openRoutes = []string{healthzRoute, readyzRoute, metricsRoute}

// isPageRoute reports whether path belongs to the live page, which takes
// the app token or the page key (see requireAppToken).
func isPageRoute(path string) bool {
	return path == "/" || path == liveEventsRoute || path == liveDeadLettersRoute || path == liveBacklogRoute || strings.HasPrefix(path, liveAssetsPrefix)
}

// routes puts every route of the HTTP service on mux, behind the
// middleware they share: the token check (open routes and, with the page
// key, the live page excepted), the W3C trace context, the mark that daprd
// has read the subscriptions (answered here in the throughput mode, with
// bulk subscribe), and the body guard on OrdersRoute.
func routes(mux *chi.Mux, cfg Config, h *Handler, log *slog.Logger, ready func(context.Context) error, live livePage, subscribed *atomic.Bool, inDaprd func(context.Context) bool) {
	mux.Use(requireAppToken(cfg.AppToken, log, live.access, openRoutes...))
	mux.Use(traceContext)
	mux.Use(markSubscribed(cfg, subscribed))
	mux.Use(guardRoute(OrdersRoute, log))

	mux.Get(healthzRoute, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.Get(readyzRoute, handleReady(subscribed, inDaprd, ready))
	if h.Metrics != nil {
		mux.Method(http.MethodGet, metricsRoute, promhttp.HandlerFor(h.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	mux.Get(statsRoute, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&h.Stats)
	})
	live.mount(mux, h, log)
	if cfg.Channel != ChannelGRPC && cfg.Bulk.MaxMessages > 0 {
		mux.Method(http.MethodPost, BulkOrdersRoute, handleBulk(h, cfg.Bulk, log))
	}
}

// markSubscribed notes that daprd read subscribeRoute and, in the
// throughput mode, answers it with the bulk subscriptions, which the SDK
// cannot express.
func markSubscribed(cfg Config, subscribed *atomic.Bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == subscribeRoute {
				subscribed.Store(true)
				if cfg.Bulk.MaxMessages > 0 {
					w.Header().Set("Content-Type", "application/json")
					_ = json.NewEncoder(w).Encode(bulkSubscriptions(cfg))
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// guardRoute puts guardBody in front of route alone.
func guardRoute(route string, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		guarded := guardBody(log, next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == route {
				guarded.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// handleReady answers 200 once daprd has read the subscriptions — or,
// for an app (re)started after that, inDaprd (nil for none) finds daprd
// holding them — and ready (nil for none) passes, else 503 with the reason.
func handleReady(subscribed *atomic.Bool, inDaprd func(context.Context) bool, ready func(context.Context) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !subscribed.Load() && inDaprd != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			if inDaprd(ctx) {
				subscribed.Store(true)
			}
			cancel()
		}
		if !subscribed.Load() {
			http.Error(w, "not subscribed yet: daprd has not read the app's subscriptions", http.StatusServiceUnavailable)
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
	}
}
