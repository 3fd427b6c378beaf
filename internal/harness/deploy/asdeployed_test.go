package deploy

// This file: the real subscriber run with the Deployment's environment.

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	subscriptionsapi "github.com/dapr/dapr/pkg/apis/subscriptions/v2alpha1"
	corev1 "k8s.io/api/core/v1"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/subscriber"
	"dapr-pub-sub/internal/subscriber/handler"
	"dapr-pub-sub/internal/subscriber/httpch"
)

// appSubscription is one entry of the app's GET /dapr/subscribe answer.
type appSubscription struct {
	PubsubName      string                    `json:"pubsubname"`
	Topic           string                    `json:"topic"`
	Route           string                    `json:"route"`
	Routes          *struct{ Default string } `json:"routes"`
	Metadata        map[string]string         `json:"metadata"`
	DeadLetterTopic string                    `json:"deadLetterTopic"`
}

// TestSubscriberAsDeployed serves the real subscriber with the Deployment's
// environment and checks what the manifests assume of it: the kubelet's
// probes and the metrics scrape need no token, everything else does, and
// its programmatic subscriptions are what alternatives/subscriptions.yaml
// declares.
func TestSubscriberAsDeployed(t *testing.T) {
	c := loadCluster(t)
	d := c.deployments["subscriber"]
	if d == nil {
		t.Fatal("no subscriber Deployment")
	}
	pod, err := inject(d)
	if err != nil {
		t.Fatal(err)
	}
	var ctr *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == "subscriber" {
			ctr = &pod.Spec.Containers[i]
		}
	}
	cfg, err := subscriber.ParseConfig(nil, envOf(ctr), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if proto := d.Spec.Template.Annotations["dapr.io/app-protocol"]; cfg.Channel != proto {
		t.Fatalf("the subscriber's channel is %q, its daprd's app protocol %q", cfg.Channel, proto)
	}
	// The subscriptions are the same on both channels (the gRPC listing is
	// tested in internal/subscriber/grpcch); here they are read over HTTP,
	// with the probes, from the service as configured but with its HTTP
	// routes.
	cfg.Channel = subscriber.ChannelHTTP
	// Here, on loopback and a free port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Address, cfg.Port = "127.0.0.1", l.Addr().(*net.TCPAddr).Port
	l.Close()
	log := slog.New(slog.DiscardHandler)
	h := handler.New(handler.Config{Out: io.Discard, Log: log, Metrics: handler.NewMetrics(),
		Timeout: cfg.Timeout, PubSub: cfg.PubSub, Topic: cfg.Topic})
	svc, err := subscriber.NewHTTPService(cfg, h, handler.NewReadiness(nil, func(context.Context) error { return nil }), nil, log)
	if err != nil {
		t.Fatal(err)
	}
	go svc.Start() //nolint:errcheck // Stop ends it
	defer func() { _ = svc.Stop() }()
	base := "http://" + cfg.ListenAddr()
	get := func(path, token string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set(httpch.AppTokenHeader, token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := get("/healthz", ""); code != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the subscriber did not start listening")
		}
	}

	if code, _ := get("/dapr/subscribe", ""); code != http.StatusUnauthorized {
		t.Errorf("/dapr/subscribe without the token = %d, want 401", code)
	}
	code, body := get("/dapr/subscribe", cfg.AppToken)
	if code != http.StatusOK {
		t.Fatalf("/dapr/subscribe = %d %s", code, body)
	}
	var subs []appSubscription
	if err := json.Unmarshal(body, &subs); err != nil {
		t.Fatalf("/dapr/subscribe: %v: %s", err, body)
	}
	// Probes and scrapes carry no token.
	app := d.Spec.Template.Spec.Containers[0]
	paths := []string{app.LivenessProbe.HTTPGet.Path, app.ReadinessProbe.HTTPGet.Path, d.Spec.Template.Annotations["prometheus.io/path"]}
	if d.Spec.Template.Annotations["dapr.io/app-protocol"] == subscriber.ChannelHTTP {
		paths = append(paths, d.Spec.Template.Annotations["dapr.io/app-health-check-path"])
	}
	for _, path := range paths {
		if code, body := get(path, ""); code != http.StatusOK {
			t.Errorf("GET %s without the token = %d %s, want 200 (daprd has read /dapr/subscribe)", path, code, body)
		}
	}

	// The declarative alternative says what the app says.
	if len(c.subs) != len(subs) {
		t.Errorf("%d declarative subscriptions, the app makes %d", len(c.subs), len(subs))
	}
	for _, s := range subs {
		route := s.Route
		if s.Routes != nil && s.Routes.Default != "" {
			route = s.Routes.Default
		}
		var found *subscriptionsapi.Subscription
		for _, ds := range c.subs {
			if ds.Spec.Pubsubname == s.PubsubName && ds.Spec.Topic == s.Topic {
				found = ds
			}
		}
		switch {
		case found == nil:
			t.Errorf("the app subscribes to %s/%s; alternatives/subscriptions.yaml does not", s.PubsubName, s.Topic)
		case found.Spec.Routes.Default != route || len(found.Spec.Routes.Rules) > 0:
			t.Errorf("subscription %s routes to %q %v, the app to %q", found.Name, found.Spec.Routes.Default, found.Spec.Routes.Rules, route)
		case found.Spec.DeadLetterTopic != s.DeadLetterTopic:
			t.Errorf("subscription %s dead-letters to %q, the app to %q", found.Name, found.Spec.DeadLetterTopic, s.DeadLetterTopic)
		case !reflect.DeepEqual(found.Spec.Metadata, s.Metadata) && (len(found.Spec.Metadata) > 0 || len(s.Metadata) > 0):
			t.Errorf("subscription %s metadata %v, the app's %v", found.Name, found.Spec.Metadata, s.Metadata)
		case !slices.Equal(found.Scopes, []string{cfg.AppID}):
			t.Errorf("subscription %s scopes %q, want [%s]", found.Name, found.Scopes, cfg.AppID)
		}
	}
}

// runtimeVersion is the Dapr runtime the tests run against
// (tools/daprd/go.mod): the one the manifests are checked for.
func runtimeVersion() (string, error) {
	root, err := proc.RepoRoot()
	if err != nil {
		return "", err
	}
	return proc.RuntimeVersion(root)
}
