package httpch

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"dapr-pub-sub/internal/subscriber/handler"
)

// The subscriber's HTTP routes, by who may call them. The SDK adds Dapr's
// /dapr/subscribe and the topic routes (handler.OrdersRoute,
// handler.DeadLetterRoute) to the same mux on the http channel; they,
// /stats and BulkOrdersRoute take the app token. The page's routes (the
// live page's: /, /ui/*, /events, /api/deadletters, /api/backlog) take the
// token or the page key.
const (
	healthzRoute   = "/healthz"        // open: liveness, the process serves
	readyzRoute    = "/readyz"         // open: readiness, subscribed and the state store answers
	metricsRoute   = "/metrics"        // open: Prometheus
	statsRoute     = "/stats"          // token: counts as JSON
	subscribeRoute = "/dapr/subscribe" // token: daprd reads the subscriptions (http channel)
)

// openRoutes take no token: probes and scrapers cannot send it.
var openRoutes = []string{healthzRoute, readyzRoute, metricsRoute}

// Page is a set of routes served beside the service's own for a browser,
// which cannot send AppTokenHeader: the live page (live.Page). With an app
// token, they take the token or the page key (see requireAppToken).
type Page interface {
	Mount(r chi.Router)    // adds the page's routes
	Owns(path string) bool // reports whether path is one of them
}

// routes puts every route of the HTTP service on mux, behind the
// middleware they share: the token check (open routes and, with the page
// key, the page's routes excepted), the W3C trace context, the mark that
// daprd has read the subscriptions (answered here in the throughput mode,
// with bulk subscribe), and the body guard on handler.OrdersRoute.
func routes(mux *chi.Mux, o Options) {
	mux.Use(requireAppToken(o.AppToken, o.Log, newPageAccess(o), openRoutes...))
	mux.Use(traceContext)
	mux.Use(markSubscribed(o.Subscriptions, o.Bulk, o.Ready))
	mux.Use(guardRoute(handler.OrdersRoute, o.Log))
	for _, r := range handler.TypeRoutes {
		mux.Use(guardRoute(r.Path, o.Log))
	}

	mux.Get(healthzRoute, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	mux.Get(readyzRoute, handleReady(o.Ready))
	if o.Handler.Metrics != nil {
		mux.Method(http.MethodGet, metricsRoute, promhttp.HandlerFor(o.Handler.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	mux.Get(statsRoute, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&o.Handler.Stats)
	})
	if o.Page != nil {
		o.Page.Mount(mux)
	}
	if o.Bulk.MaxMessages > 0 {
		mux.Method(http.MethodPost, BulkOrdersRoute, handleBulk(o.Handler, o.Bulk, o.Log))
	}
}

// markSubscribed marks ready subscribed when daprd reads subscribeRoute
// and, in the throughput mode, answers it with subs as bulk
// subscriptions, which the SDK cannot express.
func markSubscribed(subs []handler.Subscription, bulk Bulk, ready *handler.Readiness) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == subscribeRoute {
				ready.MarkSubscribed()
				if bulk.MaxMessages > 0 {
					w.Header().Set("Content-Type", "application/json")
					_ = json.NewEncoder(w).Encode(bulkSubscriptions(subs, bulk))
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

// handleReady answers 200 when ready.Check passes — daprd has read the
// subscriptions, or holds them, and the state store answers — else 503
// with the reason.
func handleReady(ready *handler.Readiness) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := ready.Check(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
}
