// Package httpch is the subscriber's HTTP service, on the Dapr Go SDK's
// service/http. On the http channel daprd POSTs each event to a topic
// route (and, in the throughput mode, batches of them to
// BulkOrdersRoute); on every channel it serves the probes, /metrics,
// /stats and the live page. routes.go lists every route by who may call
// it: the app token guards all but the probes and the scrape (auth.go),
// and a browser opens the live page with its key instead. It imports
// handler and no other part of the subscriber; the live page comes in as
// a Page.
package httpch

import (
	"log/slog"
	"net"
	"strconv"

	"github.com/dapr/go-sdk/service/common"
	daprhttp "github.com/dapr/go-sdk/service/http"
	"github.com/go-chi/chi/v5"

	"dapr-pub-sub/internal/subscriber/handler"
)

// Options are what NewService needs.
type Options struct {
	// Address and Port are where the service listens: host and port.
	Address string
	Port    int
	// AppToken, when set, is required on every route but the open ones
	// (401 else); "" turns the check off.
	AppToken string
	// Handler is served: its Stats at /stats, its Metrics (nil for none)
	// at /metrics, its HandleOrder at BulkOrdersRoute.
	Handler *handler.Handler
	// Subscriptions are what daprd delivers to this service (the http
	// channel): the SDK answers /dapr/subscribe with them and adds a route
	// for each. Empty when daprd delivers on another channel: the service
	// is then for people and probes.
	Subscriptions []handler.Subscription
	// Bulk, with MaxMessages > 0, is the throughput mode: /dapr/subscribe
	// asks for the orders in batches, to BulkOrdersRoute. Only with
	// Subscriptions.
	Bulk Bulk
	// Ready answers /readyz and is marked subscribed when daprd reads
	// /dapr/subscribe; nil for one that asks no one.
	Ready *handler.Readiness
	// Page, if not nil, is served beside the service's routes (the live
	// page); with AppToken, a browser opens it with PageKey(AppToken).
	Page Page
	Log  *slog.Logger
}

// ListenAddr is the host:port the service listens on.
func (o Options) ListenAddr() string {
	return net.JoinHostPort(o.Address, strconv.Itoa(o.Port))
}

// NewService builds the Dapr HTTP service of o: /healthz (liveness: the
// process serves), /readyz (readiness: Ready.Check passes), /metrics
// (Prometheus), /stats, Dapr's /dapr/subscribe (answered by the SDK from
// the subscriptions added here) and one route per topic, and the page's
// routes. It does not listen until Start is called.
//
// routes.go lists the routes and who may call them. Bodies are limited to
// handler.MaxBodyBytes.
func NewService(o Options) (common.Service, error) {
	if o.Ready == nil {
		o.Ready = new(handler.Readiness)
	}
	mux := chi.NewRouter()
	routes(mux, o)
	s := daprhttp.NewServiceWithMux(o.ListenAddr(), mux)
	if err := handler.AddTopicEventHandlers(s, o.Subscriptions); err != nil {
		return nil, err
	}
	return s, nil
}
