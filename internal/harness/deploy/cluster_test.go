package deploy

// This file: the cluster the manifests describe, the checks they share, and the injector run offline.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	componentsapi "github.com/dapr/dapr/pkg/apis/components/v1alpha1"
	configapi "github.com/dapr/dapr/pkg/apis/configuration/v1alpha1"
	resiliencyapi "github.com/dapr/dapr/pkg/apis/resiliency/v1alpha1"
	subscriptionsapi "github.com/dapr/dapr/pkg/apis/subscriptions/v2alpha1"
	injectorconsts "github.com/dapr/dapr/pkg/injector/consts"
	"github.com/dapr/dapr/pkg/injector/patcher"
	"github.com/dapr/kit/logger"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// cluster is the manifests of deploy/, indexed, with what the checks need
// from the rest of the repository.
type cluster struct {
	root        string
	all         []manifest
	kust        *kustomization
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	components  map[string]*componentsapi.Component
	configs     map[string]*configapi.Configuration
	resiliency  map[string]*resiliencyapi.Resiliency
	subs        []*subscriptionsapi.Subscription // alternatives/
	debug       map[string]*corev1.Container     // debug/*.json
	secretKeys  map[string][]string              // secrets.example.yaml: name → keys
	inKust      map[string]bool                  // files listed in the kustomization
	outbox      []manifest                       // outbox/: a kustomize Component, off by default (outbox_test.go)
}

func loadCluster(t *testing.T) *cluster {
	t.Helper()
	root := repoRoot(t)
	ms, err := loadManifests(filepath.Join(root, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	return index(t, root, ms)
}

func index(t *testing.T, root string, ms []manifest) *cluster {
	t.Helper()
	c := &cluster{
		root: root, all: ms,
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{}, components: map[string]*componentsapi.Component{},
		configs: map[string]*configapi.Configuration{}, resiliency: map[string]*resiliencyapi.Resiliency{},
		debug: map[string]*corev1.Container{}, secretKeys: map[string][]string{}, inKust: map[string]bool{},
	}
	for _, m := range ms {
		if strings.HasPrefix(m.File, outboxDir+"/") {
			c.outbox = append(c.outbox, m)
			continue
		}
		switch o := m.Obj.(type) {
		case *kustomization:
			if m.File != "kustomization.yaml" || c.kust != nil {
				t.Fatalf("%s: one kustomization.yaml at the top of deploy/, please", m)
			}
			c.kust = o
		case *appsv1.Deployment:
			c.deployments[o.Name] = o
		case *corev1.Service:
			c.services[o.Name] = o
		case *componentsapi.Component:
			c.components[o.Name] = o
		case *configapi.Configuration:
			c.configs[o.Name] = o
		case *resiliencyapi.Resiliency:
			c.resiliency[o.Name] = o
		case *subscriptionsapi.Subscription:
			c.subs = append(c.subs, o)
		case *corev1.Container:
			c.debug[m.File] = o
		case *corev1.Secret:
			if m.File != "secrets.example.yaml" {
				t.Fatalf("%s: a Secret outside secrets.example.yaml; real secrets are made with kubectl create secret", m)
			}
			for k := range o.StringData {
				c.secretKeys[o.Name] = append(c.secretKeys[o.Name], k)
			}
			for k := range o.Data {
				c.secretKeys[o.Name] = append(c.secretKeys[o.Name], k)
			}
		}
	}
	if c.kust == nil {
		t.Fatal("no deploy/kustomization.yaml")
	}
	for _, r := range c.kust.Resources {
		c.inKust[r] = true
	}
	return c
}

// problems collects what is wrong; the checks return them so that a test
// can also check that a broken manifest is caught.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

// applied reports whether file (relative to deploy/) is applied by
// `kubectl apply -k deploy/`.
func (c *cluster) applied(file string) bool { return c.inKust[file] }

func (c *cluster) check() problems {
	var p problems
	c.checkKustomization(&p)
	c.checkComponents(&p)
	for _, name := range sortedKeys(c.deployments) {
		c.checkDeployment(&p, c.deployments[name])
	}
	c.checkSubscriptions(&p)
	for file, ctr := range c.debug {
		c.checkSecretRefs(&p, file, ctr.Env)
	}
	return p
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// checkKustomization: it applies every top-level manifest but the example
// Secrets, nothing else, and names every image the Deployments use.
func (c *cluster) checkKustomization(p *problems) {
	entries, err := os.ReadDir(filepath.Join(c.root, "deploy"))
	if err != nil {
		p.add("%v", err)
		return
	}
	var want []string
	for _, e := range entries {
		if !e.IsDir() && e.Name() != "kustomization.yaml" && e.Name() != "secrets.example.yaml" {
			want = append(want, e.Name())
		}
	}
	got := slices.Clone(c.kust.Resources)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		p.add("kustomization resources %q, want the top-level manifests %q", got, want)
	}
	if c.kust.Namespace != "" {
		p.add("kustomization sets namespace %q: leave it to kubectl -n", c.kust.Namespace)
	}
	var images []string
	for _, d := range c.deployments {
		for _, ctr := range d.Spec.Template.Spec.Containers {
			images = append(images, ctr.Image)
		}
	}
	var named []string
	for _, im := range c.kust.Images {
		named = append(named, im.Name)
	}
	sort.Strings(images)
	sort.Strings(named)
	if !slices.Equal(images, named) {
		p.add("kustomization images %q, want one entry per Deployment image %q", named, images)
	}
}

// scopesOf parses "app=topic,topic;app2=..." (publishingScopes,
// subscriptionScopes).
func scopesOf(v string) map[string][]string {
	out := map[string][]string{}
	for _, part := range strings.Split(v, ";") {
		app, topics, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		out[app] = nil
		for _, topic := range strings.Split(topics, ",") {
			if topic != "" {
				out[app] = append(out[app], topic)
			}
		}
	}
	return out
}

// meta returns the plain value of a component's metadata item.
func meta(comp *componentsapi.Component, name string) string {
	for _, m := range comp.Spec.Metadata {
		if m.Name == name {
			return m.Value.String()
		}
	}
	return ""
}

// checkComponents: the Kubernetes secret store, and secret references that
// name a key of an example Secret.
func (c *cluster) checkComponents(p *problems) {
	for _, name := range sortedKeys(c.components) {
		comp := c.components[name]
		if comp.SecretStore != "kubernetes" {
			p.add("component %s: auth.secretStore %q, want kubernetes (Dapr's built-in store)", name, comp.SecretStore)
		}
		for _, m := range comp.Spec.Metadata {
			if ref := m.SecretKeyRef; ref.Name != "" || ref.Key != "" {
				if !slices.Contains(c.secretKeys[ref.Name], ref.Key) {
					p.add("component %s: %s reads secret %s key %q, which secrets.example.yaml does not have", name, m.Name, ref.Name, ref.Key)
				}
			}
		}
	}
}

func (c *cluster) checkSecretRefs(p *problems, where string, env []corev1.EnvVar) {
	for _, e := range env {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if !slices.Contains(c.secretKeys[ref.Name], ref.Key) {
			p.add("%s: env %s reads secret %s key %q, which secrets.example.yaml does not have", where, e.Name, ref.Name, ref.Key)
		}
	}
}

// inject runs Dapr's sidecar injector (the patch its webhook applies) on a
// pod of d, with the Helm chart's defaults, and returns the pod as it would
// run.
func inject(d *appsv1.Deployment) (*corev1.Pod, error) {
	pod := &corev1.Pod{ObjectMeta: *d.Spec.Template.ObjectMeta.DeepCopy(), Spec: *d.Spec.Template.Spec.DeepCopy()}
	pod.Name, pod.Namespace = d.Name+"-0", "default"
	// The injector warns of annotations it cannot parse on its log; the
	// checks here say so themselves.
	logger.NewLogger("dapr.injector").SetOutput(io.Discard)
	sc := patcher.NewSidecarConfig(pod)
	sc.Mode = injectorconsts.ModeKubernetes
	sc.Namespace = pod.Namespace
	sc.MTLSEnabled = true
	sc.Identity = pod.Namespace + ":default"
	sc.OperatorAddress = "dapr-api.dapr-system.svc.cluster.local:443"
	sc.SentryAddress = "dapr-sentry.dapr-system.svc.cluster.local:443"
	sc.RunAsNonRoot, sc.ReadOnlyRootFilesystem = true, true
	sc.ControlPlaneNamespace, sc.ControlPlaneTrustDomain = "dapr-system", "cluster.local"
	version, err := runtimeVersion()
	if err != nil {
		return nil, err
	}
	sc.SidecarImage = "ghcr.io/dapr/daprd:" + version
	sc.SetFromPodAnnotations()
	patch, err := sc.GetPatch()
	if err != nil {
		return nil, err
	}
	if len(patch) == 0 {
		return nil, errors.New("the injector left the pod as it is (dapr.io/enabled?)")
	}
	doc, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	if doc, err = patch.Apply(doc); err != nil {
		return nil, err
	}
	out := &corev1.Pod{}
	return out, json.Unmarshal(doc, out)
}

// knownAnnotations are the dapr.io/ annotations the injector reads: the
// annotation tags of its SidecarConfig.
func knownAnnotations() map[string]reflect.Kind {
	out := map[string]reflect.Kind{}
	t := reflect.TypeOf(patcher.SidecarConfig{})
	for i := range t.NumField() {
		f := t.Field(i)
		if key := f.Tag.Get("annotation"); key != "" {
			k := f.Type.Kind()
			if k == reflect.Pointer {
				k = f.Type.Elem().Kind()
			}
			out[key] = k
		}
	}
	return out
}

func checkAnnotations(p *problems, where string, an map[string]string) {
	known := knownAnnotations()
	for key, v := range an {
		if !strings.HasPrefix(key, "dapr.io/") {
			continue
		}
		kind, ok := known[key]
		if !ok {
			p.add("%s: annotation %s is not one the injector of this Dapr version reads", where, key)
			continue
		}
		switch kind {
		case reflect.Bool:
			if v != "true" && v != "false" {
				p.add("%s: annotation %s: %q, want \"true\" or \"false\"", where, key, v)
			}
		case reflect.Int, reflect.Int32, reflect.Int64:
			if _, err := strconv.Atoi(v); err != nil {
				p.add("%s: annotation %s: %q is not a number", where, key, v)
			}
		}
	}
}

// args returns the value after flag in a command line, or "" (and false
// when the flag is absent).
func argValue(args []string, flag string) (string, bool) {
	for i, a := range args {
		if a == flag {
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
				return args[i+1], true
			}
			return "", true
		}
	}
	return "", false
}

// envOf is a container's environment as the app's getenv sees it: plain
// values, and a placeholder for values from Secrets or resource fields.
func envOf(ctr *corev1.Container) func(string) string {
	m := map[string]string{}
	for _, e := range ctr.Env {
		switch {
		case e.ValueFrom == nil:
			m[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			m[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		default:
			m[e.Name] = "1"
		}
	}
	return func(k string) string { return m[k] }
}

func secretRef(ctr *corev1.Container, name string) *corev1.SecretKeySelector {
	for _, e := range ctr.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

func containerPort(ctr *corev1.Container, port intstr.IntOrString) (int32, bool) {
	for _, cp := range ctr.Ports {
		if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}
