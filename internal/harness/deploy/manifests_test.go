package deploy

// This file: decoding every document of deploy/ strictly into its Kubernetes
// or Dapr type.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	componentsapi "github.com/dapr/dapr/pkg/apis/components/v1alpha1"
	configapi "github.com/dapr/dapr/pkg/apis/configuration/v1alpha1"
	resiliencyapi "github.com/dapr/dapr/pkg/apis/resiliency/v1alpha1"
	subscriptionsapi "github.com/dapr/dapr/pkg/apis/subscriptions/v2alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
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
	Components []string          `json:"components,omitempty"`
}

// kustomizeComponent is the part of kustomize's Component (kind Component,
// a piece a Kustomization turns on with "components:") that deploy/outbox
// uses.
type kustomizeComponent struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	Resources  []string         `json:"resources,omitempty"`
	Patches    []kustomizePatch `json:"patches,omitempty"`
}

// kustomizePatch is a patch from a file: a strategic merge patch whose kind
// and name say what it patches.
type kustomizePatch struct {
	Path string `json:"path"`
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
	case "kustomize.config.k8s.io/v1alpha1 Component":
		return &kustomizeComponent{}, nil
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
