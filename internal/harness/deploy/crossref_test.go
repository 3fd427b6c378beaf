package deploy

// This file: the cross-references between Deployments, components and Secrets.

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	componentsapi "github.com/dapr/dapr/pkg/apis/components/v1alpha1"
	injectorconsts "github.com/dapr/dapr/pkg/injector/consts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"dapr-pub-sub/internal/appenv"
	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/retention"
	"dapr-pub-sub/internal/subscriber"
)

func (c *cluster) checkDeployment(p *problems, d *appsv1.Deployment) {
	where := "deployment " + d.Name
	tpl := d.Spec.Template
	if d.Spec.Selector == nil || len(d.Spec.Selector.MatchLabels) == 0 {
		p.add("%s: no selector", where)
	} else {
		for k, v := range d.Spec.Selector.MatchLabels {
			if tpl.Labels[k] != v {
				p.add("%s: selector %s=%s does not match the template's labels", where, k, v)
			}
		}
	}
	an := tpl.Annotations
	checkAnnotations(p, where, an)
	// The retention keeper talks to Redis directly: no sidecar, no app id.
	withDapr := d.Name != "retention"
	if withDapr != (an["dapr.io/enabled"] == "true") {
		p.add("%s: dapr.io/enabled is %q, want a sidecar: %v", where, an["dapr.io/enabled"], withDapr)
	}
	appID, cfgName := an["dapr.io/app-id"], an["dapr.io/config"]
	if withDapr {
		if appID == "" {
			p.add("%s: no dapr.io/app-id", where)
		}
		if c.configs[cfgName] == nil || !c.applied(c.fileOf(c.configs[cfgName])) {
			p.add("%s: dapr.io/config %q names no Configuration that kustomization.yaml applies", where, cfgName)
		}
		outbox := c.outboxComponents()
		for _, name := range sortedKeys(c.components) {
			if comp := c.components[name]; !outbox[name] && !slices.Contains(comp.Scopes, appID) {
				p.add("%s: app id %q is not in component %s's scopes %q", where, appID, name, comp.Scopes)
			}
		}
	}
	if len(tpl.Spec.Containers) != 1 {
		p.add("%s: %d containers, want the app alone (the injector adds daprd)", where, len(tpl.Spec.Containers))
		return
	}

	// The app container: hardened, bounded, from its own image.
	app := &tpl.Spec.Containers[0]
	if app.Image != "dapr-pub-sub-"+app.Name {
		p.add("%s: image %q, want dapr-pub-sub-%s (kustomization.yaml sets the registry and tag)", where, app.Image, app.Name)
	}
	if !slices.Contains(apps, app.Name) {
		p.add("%s: container %s is none of the apps the Dockerfile builds (%q)", where, app.Name, apps)
	}
	sc, psc := app.SecurityContext, tpl.Spec.SecurityContext
	switch {
	case sc == nil || psc == nil:
		p.add("%s: no pod or container securityContext", where)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot,
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem,
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation,
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
		p.add("%s: container securityContext %+v: want runAsNonRoot, readOnlyRootFilesystem, no privilege escalation, drop ALL", where, *sc)
	case psc.RunAsUser == nil || psc.RunAsGroup == nil || fmt.Sprintf("%d:%d", *psc.RunAsUser, *psc.RunAsGroup) != nonrootUser:
		p.add("%s: pod runs as %v:%v, want %s (the images' USER)", where, psc.RunAsUser, psc.RunAsGroup, nonrootUser)
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := app.Resources.Requests[res], app.Resources.Limits[res]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			p.add("%s: %s request %s, limit %s: want both, request ≤ limit", where, res, req.String(), lim.String())
		}
	}
	for _, pr := range []*corev1.Probe{app.LivenessProbe, app.ReadinessProbe} {
		if pr != nil && pr.HTTPGet != nil {
			if _, ok := containerPort(app, pr.HTTPGet.Port); !ok {
				p.add("%s: probe %s on port %s, which the container does not declare", where, pr.HTTPGet.Path, pr.HTTPGet.Port.String())
			}
		}
	}
	if port := an["prometheus.io/port"]; port != "" {
		n, _ := strconv.Atoi(port)
		if _, ok := containerPort(app, intstr.FromInt32(int32(n))); !ok {
			p.add("%s: prometheus.io/port %s is not a container port", where, port)
		}
	}
	c.checkSecretRefs(p, where, app.Env)
	if !withDapr {
		return
	}

	// The pod as Dapr's injector makes it.
	pod, err := inject(d)
	if err != nil {
		p.add("%s: the Dapr injector: %v", where, err)
		return
	}
	var daprd, injected *corev1.Container
	for i := range pod.Spec.Containers {
		switch ctr := &pod.Spec.Containers[i]; ctr.Name {
		case injectorconsts.SidecarContainerName:
			daprd = ctr
		case app.Name:
			injected = ctr
		}
	}
	if daprd == nil || injected == nil {
		p.add("%s: the injected pod lacks daprd or the app", where)
		return
	}
	c.checkSecretRefs(p, where+" (daprd)", daprd.Env)
	for _, ap := range app.Ports {
		for _, dp := range daprd.Ports {
			if ap.ContainerPort == dp.ContainerPort {
				p.add("%s: port %d (%s) is daprd's %s too: the containers share the pod's network", where, ap.ContainerPort, ap.Name, dp.Name)
			}
		}
	}
	flag := func(name string) string { v, _ := argValue(daprd.Args, name); return v }
	if got := flag("--app-id"); got != appID {
		p.add("%s: daprd --app-id %q, want %q", where, got, appID)
	}
	if got := flag("--config"); got != cfgName {
		p.add("%s: daprd --config %q, want %q", where, got, cfgName)
	}
	if got := flag("--max-body-size"); got != proc.MaxBodySize {
		p.add("%s: daprd --max-body-size %q, want %q as with make run", where, got, proc.MaxBodySize)
	}
	if _, ok := argValue(daprd.Args, "--log-as-json"); !ok {
		p.add("%s: daprd logs text, want --log-as-json", where)
	}
	if got := flag("--dapr-graceful-shutdown-seconds"); got != "5" {
		p.add("%s: daprd --dapr-graceful-shutdown-seconds %q, want 5 (the subscriber's own shutdown bound)", where, got)
	}
	// The tokens: what daprd takes is what the app takes.
	for _, tok := range []string{"DAPR_API_TOKEN", "APP_API_TOKEN"} {
		ds, as := secretRef(daprd, tok), secretRef(injected, tok)
		if (ds == nil) != (as == nil) || (ds != nil && (ds.Name != as.Name || ds.Key != as.Key)) {
			p.add("%s: %s: daprd reads %v, the app %v; want the same Secret key", where, tok, ds, as)
		}
	}
	if secretRef(daprd, "DAPR_API_TOKEN") == nil {
		p.add("%s: daprd's API takes no token (dapr.io/api-token-secret)", where)
	}
	getenv := envOf(injected)
	if got, want := getenv("DAPR_GRPC_PORT"), flag("--dapr-grpc-port"); got == "" || got != want {
		p.add("%s: the app gets DAPR_GRPC_PORT %q, daprd listens on %q", where, got, want)
	}

	var pubsub *componentsapi.Component
	outbox := c.outboxComponents()
	for _, name := range sortedKeys(c.components) {
		if comp := c.components[name]; strings.HasPrefix(comp.Spec.Type, "pubsub.") && !outbox[name] {
			if pubsub != nil {
				p.add("two pubsub components, %s and %s: one broker, please", pubsub.Name, name)
			}
			pubsub = comp
		}
	}
	if pubsub == nil {
		p.add("no pubsub component")
		return
	}
	pubScopes, subScopes := scopesOf(meta(pubsub, "publishingScopes")), scopesOf(meta(pubsub, "subscriptionScopes"))
	allowed := strings.Split(meta(pubsub, "allowedTopics"), ",")

	switch app.Name {
	case "subscriber":
		cfg, err := subscriber.ParseConfig(nil, getenv, io.Discard)
		if err != nil {
			p.add("%s: the subscriber refuses its environment: %v", where, err)
			return
		}
		// Records must outlive every entry the keeper keeps: one window.
		if k := c.deployments["retention"]; k != nil {
			window := retention.DefaultWindow.String()
			for _, e := range k.Spec.Template.Spec.Containers[0].Env {
				if e.Name == appenv.RetentionWindow {
					window = e.Value
				}
			}
			if w, err := time.ParseDuration(window); err != nil || w != cfg.RetentionWindow {
				p.add("%s: RETENTION_WINDOW %s, the retention keeper's %s: keep them equal", where, cfg.RetentionWindow, window)
			}
		}
		// The live page's backlog: a Service of the keeper's metrics port.
		if cfg.BacklogURL != "" {
			c.checkBacklogURL(p, where, cfg.BacklogURL)
		}
		// daprd delivers to the app's HTTP port on the http channel, to its
		// gRPC port on grpc; the HTTP port serves the probes on both.
		deliverPort := cfg.Port
		if cfg.Channel == subscriber.ChannelGRPC {
			deliverPort = cfg.GRPCPort
			if n, ok := containerPort(app, intstr.FromString("grpc")); !ok || int(n) != cfg.GRPCPort {
				p.add("%s: container port grpc %d, the app's gRPC service listens on %d", where, n, cfg.GRPCPort)
			}
		}
		if proto := flag("--app-protocol"); proto != cfg.Channel || an["dapr.io/app-protocol"] != cfg.Channel {
			p.add("%s: dapr.io/app-protocol %q, daprd --app-protocol %q, the app's channel is %s", where, an["dapr.io/app-protocol"], proto, cfg.Channel)
		}
		port := flag("--app-port")
		if want := strconv.Itoa(deliverPort); port != want || an["dapr.io/app-port"] != want {
			p.add("%s: dapr.io/app-port %q, daprd --app-port %q, the app takes deliveries on %s", where, an["dapr.io/app-port"], port, want)
		}
		if n, ok := containerPort(app, intstr.FromString("http")); !ok || int(n) != cfg.Port {
			p.add("%s: container port http %d, the app listens on %d", where, n, cfg.Port)
		}
		if cfg.Address != "0.0.0.0" {
			p.add("%s: the app listens on %s: the kubelet's probes come from outside the pod", where, cfg.Address)
		}
		if cfg.DaprAddress != "127.0.0.1:"+flag("--dapr-grpc-port") {
			p.add("%s: the app calls daprd at %s, daprd's gRPC port is %s", where, cfg.DaprAddress, flag("--dapr-grpc-port"))
		}
		if cfg.AppID != appID {
			p.add("%s: APP_ID %q, dapr.io/app-id %q: its records are kept under its app id", where, cfg.AppID, appID)
		}
		if cfg.AppToken == "" {
			p.add("%s: the app checks no token (APP_API_TOKEN)", where)
		}
		if secretRef(daprd, "APP_API_TOKEN") == nil {
			p.add("%s: daprd sends the app no token (dapr.io/app-token-secret)", where)
		}
		if comp := c.components[cfg.PubSub]; comp == nil || comp != pubsub {
			p.add("%s: PUBSUB_NAME %q is not the pubsub component", where, cfg.PubSub)
		}
		if comp := c.components[cfg.StateStore]; comp == nil || !strings.HasPrefix(comp.Spec.Type, "state.") {
			p.add("%s: STATE_STORE %q is not a state store component", where, cfg.StateStore)
		}
		for _, topic := range []string{cfg.Topic, cfg.DeadLetterTopic} {
			if !slices.Contains(allowed, topic) || !slices.Contains(subScopes[appID], topic) {
				p.add("%s: topic %s: allowed %q, %s may subscribe to %q", where, topic, allowed, appID, subScopes[appID])
			}
		}
		if !slices.Contains(pubScopes[appID], cfg.DeadLetterTopic) {
			p.add("%s: %s's sidecar may not publish its dead letters to %s (publishingScopes)", where, appID, cfg.DeadLetterTopic)
		}
		if ms, _ := strconv.Atoi(meta(pubsub, "processingTimeout")); time.Duration(ms)*time.Millisecond <= cfg.Timeout {
			p.add("%s: HANDLER_TIMEOUT %s is not below the component's processingTimeout %d ms", where, cfg.Timeout, ms)
		}
		if _, ok := argValue(daprd.Args, "--enable-app-health-check"); !ok {
			p.add("%s: daprd does not check the app's health", where)
		}
		if app.LivenessProbe == nil || app.LivenessProbe.HTTPGet == nil || app.LivenessProbe.HTTPGet.Path != "/healthz" ||
			app.ReadinessProbe == nil || app.ReadinessProbe.HTTPGet == nil || app.ReadinessProbe.HTTPGet.Path != "/readyz" {
			p.add("%s: want liveness GET /healthz and readiness GET /readyz", where)
		}
		if got := flag("--app-health-check-path"); cfg.Channel == subscriber.ChannelHTTP && app.LivenessProbe != nil && app.LivenessProbe.HTTPGet != nil && got != app.LivenessProbe.HTTPGet.Path {
			p.add("%s: daprd checks %s, the kubelet %s", where, got, app.LivenessProbe.HTTPGet.Path)
		}
	case "publisher":
		cfg, err := publisher.ParseConfig(nil, getenv, io.Discard)
		if err != nil {
			p.add("%s: the publisher refuses its environment: %v", where, err)
			return
		}
		if cfg.Count != publisher.Forever || cfg.Rate <= 0 || cfg.File != "" {
			p.add("%s: count %d, rate %g, file %q: a Deployment's publisher runs until stopped at a rate", where, cfg.Count, cfg.Rate, cfg.File)
		}
		if cfg.DaprAddress != "127.0.0.1:"+flag("--dapr-grpc-port") {
			p.add("%s: the app calls daprd at %s, daprd's gRPC port is %s", where, cfg.DaprAddress, flag("--dapr-grpc-port"))
		}
		if comp := c.components[cfg.PubSub]; comp == nil || comp != pubsub {
			p.add("%s: PUBSUB_NAME %q is not the pubsub component", where, cfg.PubSub)
		}
		if !slices.Contains(allowed, cfg.Topic) || !slices.Contains(pubScopes[appID], cfg.Topic) {
			p.add("%s: %s may not publish %s (allowedTopics %q, publishingScopes %q)", where, appID, cfg.Topic, allowed, pubScopes[appID])
		}
		if _, port, err := net.SplitHostPort(cfg.MetricsAddress); err != nil || port != an["prometheus.io/port"] {
			p.add("%s: metrics at %q, prometheus.io/port %q", where, cfg.MetricsAddress, an["prometheus.io/port"])
		} else if n, _ := strconv.Atoi(port); app.LivenessProbe == nil || app.LivenessProbe.HTTPGet == nil {
			p.add("%s: no liveness probe on its metrics port %d", where, n)
		} else if got, ok := containerPort(app, app.LivenessProbe.HTTPGet.Port); !ok || int(got) != n || app.LivenessProbe.HTTPGet.Path != "/metrics" {
			p.add("%s: liveness probe %s on %d, metrics served on %d", where, app.LivenessProbe.HTTPGet.Path, got, n)
		}
		if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			p.add("%s: want one replica, recreated: two publishers would publish the same order ids", where)
		}
	default:
		p.add("%s: no checks for container %s", where, app.Name)
	}
}

// outboxComponents is the outbox mode's components (deploy/outbox): each
// state store that has Dapr's outbox publish (outboxPublishPubsub), and the
// pubsub of its internal topic (outboxPubsub). They are the publisher's
// alone; the checks that every app sees every component, and that there is
// one broker, leave them out.
func (c *cluster) outboxComponents() map[string]bool {
	out := map[string]bool{}
	for name, comp := range c.components {
		if meta(comp, "outboxPublishPubsub") != "" {
			out[name] = true
			if internal := meta(comp, "outboxPubsub"); internal != "" {
				out[internal] = true
			}
		}
	}
	return out
}

func (c *cluster) fileOf(obj any) string {
	for _, m := range c.all {
		if m.Obj == obj {
			return m.File
		}
	}
	return ""
}

// checkSubscriptions: the declarative alternative is not applied, and it
// subscribes only app ids the components know.
func (c *cluster) checkSubscriptions(p *problems) {
	for _, s := range c.subs {
		if c.applied(c.fileOf(s)) {
			p.add("subscription %s is applied, but the subscriber subscribes programmatically to the same topic (and daprd keeps that one)", s.Name)
		}
		if c.components[s.Spec.Pubsubname] == nil {
			p.add("subscription %s: no pubsub component %q", s.Name, s.Spec.Pubsubname)
		}
		if len(s.Scopes) == 0 {
			p.add("subscription %s: no scopes: every app id would subscribe", s.Name)
		}
	}
}

func TestManifestsCrossReferences(t *testing.T) {
	c := loadCluster(t)
	for _, err := range c.check() {
		t.Error(err)
	}
	for _, name := range []string{"subscriber", "publisher"} {
		if c.deployments[name] == nil {
			t.Errorf("no Deployment %s", name)
		}
	}
	if d := c.deployments["subscriber"]; d != nil && (d.Spec.Replicas == nil || *d.Spec.Replicas < 2) {
		t.Error("the subscriber should run 2 replicas: they share one consumer group")
	}
}

// TestManifestsCrossReferencesCatchMistakes breaks one thing at a time in a
// fresh copy of the manifests and expects a problem naming it.
func TestManifestsCrossReferencesCatchMistakes(t *testing.T) {
	for _, c := range []struct {
		name, want string
		breakIt    func(c *cluster)
	}{
		{"app-port", "app-port", func(c *cluster) {
			c.deployments["subscriber"].Spec.Template.Annotations["dapr.io/app-port"] = "8003"
		}},
		{"annotation typo", "not one the injector", func(c *cluster) {
			c.deployments["subscriber"].Spec.Template.Annotations["dapr.io/app-health-probe-threshold"] = "3"
		}},
		{"annotation not a number", "not a number", func(c *cluster) {
			c.deployments["subscriber"].Spec.Template.Annotations["dapr.io/app-health-threshold"] = "three"
		}},
		{"config name", "names no Configuration", func(c *cluster) {
			c.deployments["publisher"].Spec.Template.Annotations["dapr.io/config"] = "daprconfg"
		}},
		{"app id not in scopes", "scopes", func(c *cluster) {
			c.deployments["publisher"].Spec.Template.Annotations["dapr.io/app-id"] = "publsher"
		}},
		{"secret key", "does not have", func(c *cluster) {
			c.components["pubsub"].Spec.Metadata[1].SecretKeyRef.Key = "password"
		}},
		{"app token secret", "APP_API_TOKEN", func(c *cluster) {
			c.deployments["subscriber"].Spec.Template.Annotations["dapr.io/app-token-secret"] = "dapr-api-token"
		}},
		{"probe path", "readiness GET /readyz", func(c *cluster) {
			c.deployments["subscriber"].Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet.Path = "/ready"
		}},
		{"loopback", "probes come from outside", func(c *cluster) {
			setEnv(&c.deployments["subscriber"].Spec.Template.Spec.Containers[0], "APP_ADDRESS", "127.0.0.1")
		}},
		{"topic not allowed", "may not publish", func(c *cluster) {
			setEnv(&c.deployments["publisher"].Spec.Template.Spec.Containers[0], "TOPIC_NAME", "payments")
		}},
		{"publisher not forever", "until stopped", func(c *cluster) {
			setEnv(&c.deployments["publisher"].Spec.Template.Spec.Containers[0], "PUBLISH_COUNT", "10")
		}},
		{"bad env value", "refuses its environment", func(c *cluster) {
			setEnv(&c.deployments["subscriber"].Spec.Template.Spec.Containers[0], "HANDLER_TIMEOUT", "4")
		}},
		{"writable root", "readOnlyRootFilesystem", func(c *cluster) {
			c.deployments["publisher"].Spec.Template.Spec.Containers[0].SecurityContext.ReadOnlyRootFilesystem = nil
		}},
		{"no memory limit", "memory request", func(c *cluster) {
			delete(c.deployments["publisher"].Spec.Template.Spec.Containers[0].Resources.Limits, corev1.ResourceMemory)
		}},
		{"port taken by daprd", "daprd's", func(c *cluster) {
			c.deployments["publisher"].Spec.Template.Spec.Containers[0].Ports[0].ContainerPort = 9090
		}},
		{"image", "image", func(c *cluster) {
			c.deployments["publisher"].Spec.Template.Spec.Containers[0].Image = "publisher"
		}},
		{"declarative subscription applied", "is applied", func(c *cluster) {
			c.inKust["alternatives/subscriptions.yaml"] = true
		}},
		{"retention windows differ", "keep them equal", func(c *cluster) {
			setEnv(&c.deployments["retention"].Spec.Template.Spec.Containers[0], "RETENTION_WINDOW", "1h")
		}},
		{"a sidecar on the keeper", "want a sidecar: false", func(c *cluster) {
			c.deployments["retention"].Spec.Template.Annotations["dapr.io/enabled"] = "true"
		}},
		{"backlog URL on the wrong port", "BACKLOG_URL", func(c *cluster) {
			setEnv(&c.deployments["subscriber"].Spec.Template.Spec.Containers[0], "BACKLOG_URL", "http://retention:9090/backlog")
		}},
		{"unlisted manifest", "kustomization resources", func(c *cluster) {
			c.kust.Resources = c.kust.Resources[1:]
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := loadCluster(t)
			c.breakIt(cl)
			ps := cl.check()
			for _, p := range ps {
				if strings.Contains(p.Error(), c.want) {
					t.Log(p)
					return
				}
			}
			t.Errorf("no problem mentions %q; got %v", c.want, ps)
		})
	}
}

func setEnv(ctr *corev1.Container, name, value string) {
	for i := range ctr.Env {
		if ctr.Env[i].Name == name {
			ctr.Env[i] = corev1.EnvVar{Name: name, Value: value}
			return
		}
	}
	ctr.Env = append(ctr.Env, corev1.EnvVar{Name: name, Value: value})
}

// checkBacklogURL: raw names a Service in deploy/ whose port leads to the
// retention keeper's container port that serves /backlog.
func (c *cluster) checkBacklogURL(p *problems, where, raw string) {
	u, err := url.Parse(raw)
	if err != nil {
		p.add("%s: BACKLOG_URL %q: %v", where, raw, err)
		return
	}
	svc, keeper := c.services[u.Hostname()], c.deployments["retention"]
	if svc == nil || keeper == nil {
		p.add("%s: BACKLOG_URL %s: no Service %q of the retention keeper in deploy/", where, raw, u.Hostname())
		return
	}
	for k, v := range svc.Spec.Selector {
		if keeper.Spec.Template.Labels[k] != v {
			p.add("%s: BACKLOG_URL %s: Service %s does not select the retention keeper (%s=%s)", where, raw, svc.Name, k, v)
		}
	}
	ctr := &keeper.Spec.Template.Spec.Containers[0]
	serves := envOf(ctr)(appenv.MetricsAddress)
	for _, sp := range svc.Spec.Ports {
		if strconv.Itoa(int(sp.Port)) != u.Port() {
			continue
		}
		n, ok := containerPort(ctr, sp.TargetPort)
		if !ok || u.Path != "/backlog" || !strings.HasSuffix(serves, ":"+strconv.Itoa(int(n))) {
			p.add("%s: BACKLOG_URL %s: Service port %d leads to container port %d, the keeper serves /backlog on METRICS_ADDRESS %s", where, raw, sp.Port, n, serves)
		}
		return
	}
	p.add("%s: BACKLOG_URL %s: Service %s has no port %s", where, raw, svc.Name, u.Port())
}
