package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	commonapi "github.com/dapr/dapr/pkg/apis/common"
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
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"dapr-pub-sub/internal/launcher"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/subscriber"
)

// kustomization is the part of kustomize's Kustomization that deploy/ uses;
// anything else is an unknown field, so a typo fails.
type kustomization struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Namespace  string            `json:"namespace,omitempty"`
	Resources  []string          `json:"resources,omitempty"`
	Images     []kustomizeImage  `json:"images,omitempty"`
	Labels     []kustomizeLabels `json:"labels,omitempty"`
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

type kustomizeLabels struct {
	Pairs            map[string]string `json:"pairs,omitempty"`
	IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	IncludeTemplates bool              `json:"includeTemplates,omitempty"`
}

// newObject returns an empty object of the API type for apiVersion and
// kind; any other pair is an error.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "dapr.io/v1alpha1 Component":
		return &componentsapi.Component{}, nil
	case "dapr.io/v1alpha1 Configuration":
		return &configapi.Configuration{}, nil
	case "dapr.io/v1alpha1 Resiliency":
		return &resiliencyapi.Resiliency{}, nil
	case "dapr.io/v2alpha1 Subscription":
		return &subscriptionsapi.Subscription{}, nil
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		return &kustomization{}, nil
	}
	return nil, fmt.Errorf("unknown apiVersion %q kind %q", apiVersion, kind)
}

// strictJSON decodes data into obj as the API server does (keys match
// case-sensitively) and fails on unknown and duplicate fields.
func strictJSON(data []byte, obj any) error {
	strict, err := sigsjson.UnmarshalStrict(data, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// decodeStrict decodes one YAML document into its API type. It returns nil
// for a document that holds nothing (only comments).
func decodeStrict(doc []byte) (any, error) {
	data, err := yaml.YAMLToJSONStrict(doc) // fails on duplicate keys
	if err != nil {
		return nil, err
	}
	if string(bytes.TrimSpace(data)) == "null" {
		return nil, nil
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, err
	}
	obj, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, err
	}
	if err := strictJSON(data, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// manifest is one decoded document under deploy/.
type manifest struct {
	File string // slash-separated, relative to deploy/
	Doc  int    // its index in the file
	Obj  any
}

func (m manifest) String() string { return fmt.Sprintf("%s#%d", m.File, m.Doc) }

// loadManifests decodes every document of every file under dir: YAML files
// into their API types, JSON files (custom profiles for kubectl debug) into
// a Container. Any other file is an error.
func loadManifests(dir string) ([]manifest, error) {
	var out []manifest
	var errs []error
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch filepath.Ext(path) {
		case ".yaml":
			r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
			for i := 0; ; i++ {
				doc, err := r.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return fmt.Errorf("%s: %w", rel, err)
				}
				obj, err := decodeStrict(doc)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s#%d: %w", rel, i, err))
					continue
				}
				if obj != nil {
					out = append(out, manifest{File: rel, Doc: i, Obj: obj})
				}
			}
		case ".json":
			c := &corev1.Container{}
			if err := strictJSON(b, c); err != nil {
				errs = append(errs, fmt.Errorf("%s: Container: %w", rel, err))
			} else {
				out = append(out, manifest{File: rel, Obj: c})
			}
		default:
			errs = append(errs, fmt.Errorf("%s: not .yaml or .json (kustomize and kubectl would not see it as meant)", rel))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, errors.Join(errs...)
}

// loadFile decodes one YAML file outside deploy/ (components/, config/).
func loadFile[T any](t *testing.T, path string) T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := decodeStrict(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	v, ok := obj.(T)
	if !ok {
		t.Fatalf("%s: a %T, want %T", path, obj, v)
	}
	return v
}

func TestManifestsDecodeStrictly(t *testing.T) {
	ms, err := loadManifests(filepath.Join(repoRoot(t), "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, m := range ms {
		kinds[fmt.Sprintf("%T", m.Obj)]++
	}
	t.Logf("decoded %d documents: %v", len(ms), kinds)
	for _, want := range []string{"*v1.Deployment", "*v1alpha1.Component", "*v1alpha1.Configuration", "*v1alpha1.Resiliency", "*v2alpha1.Subscription", "*v1.Secret", "*deploy.kustomization"} {
		if kinds[want] == 0 {
			t.Errorf("no %s under deploy/", want)
		}
	}
}

// TestStrictDecodingCatchesTypos: each good document decodes, and the same
// document with one mistake does not.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	deployment := `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  replicas: 2
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec:
      containers: [{name: x, image: x}]
`
	component := `apiVersion: dapr.io/v1alpha1
kind: Component
metadata: {name: pubsub}
spec:
  type: pubsub.redis
  version: v1
  metadata:
    - name: redisHost
      value: redis:6379
scopes: [subscriber]
`
	subscription := `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: orders}
spec:
  pubsubname: pubsub
  topic: orders
  routes: {default: /orders}
  deadLetterTopic: orders-deadletter
`
	resiliency := `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: r}
spec:
  policies:
    retries:
      deliver: {policy: exponential, maxInterval: 4s, maxRetries: 10}
  targets: {components: {pubsub: {inbound: {retry: deliver}}}}
`
	configuration := `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: c}
spec:
  tracing: {samplingRate: "1"}
`
	kust := `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [a.yaml]
`
	secret := `apiVersion: v1
kind: Secret
metadata: {name: s}
stringData: {token: x}
`
	for _, c := range []struct {
		name, good, old, new string
	}{
		{"Deployment replica", deployment, "replicas: 2", "replica: 2"},
		{"Deployment case", deployment, "replicas: 2", "Replicas: 2"},
		{"Deployment container field", deployment, "image: x", "imag: x"},
		{"Deployment duplicate key", deployment, "replicas: 2", "replicas: 2\n  replicas: 3"},
		{"Component metdata", component, "  metadata:\n    - name", "  metdata:\n    - name"},
		{"Component scope", component, "scopes:", "scope:"},
		{"Component secretKeyRef", component, "value: redis:6379", "secretKeyRef: {name: redis, keys: password}"},
		{"Component unknown kind", component, "kind: Component", "kind: Components"},
		{"Component unknown version", component, "dapr.io/v1alpha1", "dapr.io/v1"},
		{"Subscription field", subscription, "deadLetterTopic:", "deadLetterTopik:"},
		{"Subscription v1alpha1 shape", subscription, "routes: {default: /orders}", "route: /orders"},
		{"Resiliency field", resiliency, "maxRetries: 10", "maxRetry: 10"},
		{"Configuration field", configuration, "samplingRate", "samplingrate"},
		{"Kustomization field", kust, "resources:", "resource:"},
		{"Secret field", secret, "stringData:", "stringdata:"},
		{"no kind", secret, "kind: Secret\n", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := decodeStrict([]byte(c.good)); err != nil {
				t.Fatalf("the good document fails: %v", err)
			}
			bad := strings.Replace(c.good, c.old, c.new, 1)
			if bad == c.good {
				t.Fatalf("%q is not in the document", c.old)
			}
			_, err := decodeStrict([]byte(bad))
			if err == nil {
				t.Fatalf("decoded without error:\n%s", bad)
			}
			t.Log(err)
		})
	}
}

// cluster is the manifests of deploy/, indexed, with what the checks need
// from the rest of the repository.
type cluster struct {
	root        string
	all         []manifest
	kust        *kustomization
	deployments map[string]*appsv1.Deployment
	components  map[string]*componentsapi.Component
	configs     map[string]*configapi.Configuration
	resiliency  map[string]*resiliencyapi.Resiliency
	subs        []*subscriptionsapi.Subscription // alternatives/
	debug       map[string]*corev1.Container     // debug/*.json
	secretKeys  map[string][]string              // secrets.example.yaml: name → keys
	inKust      map[string]bool                  // files listed in the kustomization
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
		deployments: map[string]*appsv1.Deployment{}, components: map[string]*componentsapi.Component{},
		configs: map[string]*configapi.Configuration{}, resiliency: map[string]*resiliencyapi.Resiliency{},
		debug: map[string]*corev1.Container{}, secretKeys: map[string][]string{}, inKust: map[string]bool{},
	}
	for _, m := range ms {
		switch o := m.Obj.(type) {
		case *kustomization:
			if m.File != "kustomization.yaml" || c.kust != nil {
				t.Fatalf("%s: one kustomization.yaml at the top of deploy/, please", m)
			}
			c.kust = o
		case *appsv1.Deployment:
			c.deployments[o.Name] = o
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
	if an["dapr.io/enabled"] != "true" {
		p.add("%s: dapr.io/enabled is not \"true\"", where)
	}
	appID := an["dapr.io/app-id"]
	if appID == "" {
		p.add("%s: no dapr.io/app-id", where)
	}
	cfgName := an["dapr.io/config"]
	if c.configs[cfgName] == nil || !c.applied(c.fileOf(c.configs[cfgName])) {
		p.add("%s: dapr.io/config %q names no Configuration that kustomization.yaml applies", where, cfgName)
	}
	for _, name := range sortedKeys(c.components) {
		if comp := c.components[name]; !slices.Contains(comp.Scopes, appID) {
			p.add("%s: app id %q is not in component %s's scopes %q", where, appID, name, comp.Scopes)
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
	if _, err := os.Stat(filepath.Join(c.root, "cmd", app.Name, "Dockerfile")); err != nil {
		p.add("%s: container %s has no cmd/%s/Dockerfile", where, app.Name, app.Name)
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
	if got := flag("--max-body-size"); got != launcher.MaxBodySize {
		p.add("%s: daprd --max-body-size %q, want %q as with make run", where, got, launcher.MaxBodySize)
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
	for _, comp := range c.components {
		if strings.HasPrefix(comp.Spec.Type, "pubsub.") {
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

// TestManifestsMatchLocalComponents keeps deploy/ and components/ + config/
// from drifting: the same components with the same metadata (but where
// Redis is and where its password comes from), the same resiliency policies,
// the same Configuration (but the secret store's name).
func TestManifestsMatchLocalComponents(t *testing.T) {
	c := loadCluster(t)
	local, err := filepath.Glob(filepath.Join(c.root, "components", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range local {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := decodeStrict(b)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		switch o := obj.(type) {
		case *componentsapi.Component:
			if strings.HasPrefix(o.Spec.Type, "secretstores.") {
				continue // on Kubernetes: Dapr's built-in "kubernetes" store
			}
			k := c.components[o.Name]
			if k == nil {
				t.Errorf("%s: no component %s in deploy/", path, o.Name)
				continue
			}
			for _, err := range compareComponents(o, k) {
				t.Errorf("component %s: %v", o.Name, err)
			}
		case *resiliencyapi.Resiliency:
			k := c.resiliency[o.Name]
			if k == nil {
				t.Errorf("%s: no resiliency %s in deploy/", path, o.Name)
			} else if !reflect.DeepEqual(o.Spec, k.Spec) || !slices.Equal(o.Scopes, k.Scopes) {
				t.Errorf("resiliency %s differs from %s", o.Name, path)
			}
		default:
			t.Errorf("%s: a %T: add it to this test", path, obj)
		}
	}
	// Every component in deploy/ has its local twin.
	for name := range c.components {
		if _, err := os.Stat(filepath.Join(c.root, "components", name+".yaml")); err != nil {
			t.Errorf("deploy/ has component %s, components/ has no %s.yaml", name, name)
		}
	}
	if len(c.configs) != 1 {
		t.Fatalf("%d Configurations in deploy/, want 1", len(c.configs))
	}
	lc := loadFile[*configapi.Configuration](t, filepath.Join(c.root, "config", "config.yaml"))
	for _, kc := range c.configs {
		want := lc.DeepCopy()
		if want.Spec.Secrets != nil {
			for i := range want.Spec.Secrets.Scopes {
				if want.Spec.Secrets.Scopes[i].StoreName == "localsecrets" {
					want.Spec.Secrets.Scopes[i].StoreName = "kubernetes"
				}
			}
		}
		if kc.Name != want.Name || !reflect.DeepEqual(kc.Spec, want.Spec) {
			k, _ := json.Marshal(kc.Spec)
			l, _ := json.Marshal(want.Spec)
			t.Errorf("Configuration %s differs from config/config.yaml (store localsecrets read as kubernetes):\n deploy: %s\n local:  %s", kc.Name, k, l)
		}
		if s := kc.Spec.Secrets; s == nil || len(s.Scopes) == 0 || s.Scopes[0].DefaultAccess != "deny" {
			t.Errorf("Configuration %s: the secrets API is not denied", kc.Name)
		}
		if kc.Spec.TracingSpec == nil || kc.Spec.TracingSpec.SamplingRate != "1" {
			t.Errorf("Configuration %s: want tracing samplingRate \"1\"", kc.Name)
		}
	}
}

func str(v commonapi.DynamicValue) string { return v.String() }

// compareComponents returns how the cluster's component k differs from the
// local one l beyond what must differ: redisHost (a service, not
// localhost), the password's secret reference, and the secret store.
func compareComponents(l, k *componentsapi.Component) []error {
	var errs []error
	if l.Spec.Type != k.Spec.Type || l.Spec.Version != k.Spec.Version {
		errs = append(errs, fmt.Errorf("type %s/%s, local %s/%s", k.Spec.Type, k.Spec.Version, l.Spec.Type, l.Spec.Version))
	}
	if !slices.Equal(l.Scopes, k.Scopes) {
		errs = append(errs, fmt.Errorf("scopes %q, local %q", k.Scopes, l.Scopes))
	}
	byName := func(c *componentsapi.Component) map[string]commonapi.NameValuePair {
		m := map[string]commonapi.NameValuePair{}
		for _, nv := range c.Spec.Metadata {
			m[nv.Name] = nv
		}
		return m
	}
	lm, km := byName(l), byName(k)
	for _, name := range sortedKeys(lm) {
		lv, ok := km[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("metadata %s missing", name))
		case name == "redisHost":
			host := lv.Value.String()
			if host == "" || host == str(lm[name].Value) || strings.HasPrefix(host, "localhost") || strings.HasPrefix(host, "127.") {
				errs = append(errs, fmt.Errorf("redisHost %q: want the cluster's Redis service", host))
			}
		case name == "redisPassword":
			if lv.SecretKeyRef.Name == "" || lv.Value.String() != "" {
				errs = append(errs, errors.New("redisPassword: want a secretKeyRef and no value"))
			}
		case !reflect.DeepEqual(lv, lm[name]):
			errs = append(errs, fmt.Errorf("metadata %s = %s, local %s", name, lv.Value.String(), str(lm[name].Value)))
		}
	}
	for name := range km {
		if _, ok := lm[name]; !ok {
			errs = append(errs, fmt.Errorf("metadata %s is not in the local component", name))
		}
	}
	return errs
}

func TestManifestsDriftIsCaught(t *testing.T) {
	c := loadCluster(t)
	l := loadFile[*componentsapi.Component](t, filepath.Join(c.root, "components", "pubsub.yaml"))
	if errs := compareComponents(l, c.components["pubsub"]); len(errs) > 0 {
		t.Fatal(errs)
	}
	k := c.components["pubsub"].DeepCopy()
	for i := range k.Spec.Metadata {
		if k.Spec.Metadata[i].Name == "concurrency" {
			k.Spec.Metadata[i].Value.Raw = []byte(`"20"`)
		}
	}
	if errs := compareComponents(l, k); len(errs) != 1 || !strings.Contains(errs[0].Error(), "concurrency") {
		t.Errorf("a changed concurrency: %v", errs)
	}
	k = c.components["pubsub"].DeepCopy()
	k.Spec.Metadata[0].Value.Raw = []byte(`"localhost:6379"`)
	if errs := compareComponents(l, k); len(errs) != 1 || !strings.Contains(errs[0].Error(), "redisHost") {
		t.Errorf("redisHost localhost: %v", errs)
	}
}

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
	// tested in internal/subscriber); here they are read over HTTP, with the
	// probes, from the service as configured but with its HTTP routes.
	cfg.Channel = subscriber.ChannelHTTP
	// Here, on loopback and a free port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Address, cfg.Port = "127.0.0.1", l.Addr().(*net.TCPAddr).Port
	l.Close()
	log := slog.New(slog.DiscardHandler)
	h := subscriber.NewHandler(subscriber.HandlerConfig{Out: io.Discard, Log: log, Metrics: subscriber.NewMetrics(),
		Timeout: cfg.Timeout, PubSub: cfg.PubSub, Topic: cfg.Topic})
	svc, err := subscriber.NewService(cfg, h, log, func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	go svc.Start() //nolint:errcheck // Stop ends it
	defer func() { _ = svc.Stop() }()
	base := "http://" + cfg.ListenAddr()
	get := func(path, token string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if token != "" {
			req.Header.Set(subscriber.AppTokenHeader, token)
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
	root, err := launcher.RepoRoot()
	if err != nil {
		return "", err
	}
	return launcher.RuntimeVersion(root)
}
