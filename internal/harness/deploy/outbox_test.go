package deploy

// This file: deploy/outbox, the outbox mode's kustomize Component, kept in
// step with components/outbox/ (make run OUTBOX=1).

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	componentsapi "github.com/dapr/dapr/pkg/apis/components/v1alpha1"
	resiliencyapi "github.com/dapr/dapr/pkg/apis/resiliency/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"

	"dapr-pub-sub/internal/publisher"
)

// outboxDir is the kustomize Component of the outbox mode, relative to
// deploy/.
const outboxDir = "outbox"

// withOutbox returns the cluster of deploy/ with the Component deploy/outbox
// turned on, rendered as kustomize renders it: the Component's resources
// added, and each patch applied to the object of its kind and name as a
// strategic merge patch (for Dapr's kinds, which kustomize has no schema
// for, that is a JSON merge patch: maps merged, lists replaced). Checked
// against kubectl kustomize (kustomize v5.5.0) by hand: the same objects.
func withOutbox(t *testing.T) *cluster {
	t.Helper()
	c := loadCluster(t)
	var comp *kustomizeComponent
	byFile := map[string][]manifest{}
	for _, m := range c.outbox {
		rel := strings.TrimPrefix(m.File, outboxDir+"/")
		if k, ok := m.Obj.(*kustomizeComponent); ok && rel == "kustomization.yaml" {
			comp = k
			continue
		}
		byFile[rel] = append(byFile[rel], m)
	}
	if comp == nil {
		t.Fatalf("no kustomize Component in deploy/%s/kustomization.yaml", outboxDir)
	}
	used := map[string]bool{}
	for _, r := range comp.Resources {
		used[r] = true
		if len(byFile[r]) == 0 {
			t.Fatalf("deploy/%s: resource %s holds nothing", outboxDir, r)
		}
		for _, m := range byFile[r] {
			o, ok := m.Obj.(*componentsapi.Component)
			if !ok {
				t.Fatalf("%s: a %T; the outbox adds Dapr components only", m, m.Obj)
			}
			if c.components[o.Name] != nil {
				t.Fatalf("%s: component %s is already in deploy/ (kustomize refuses a second)", m, o.Name)
			}
			c.components[o.Name] = o
		}
	}
	for _, p := range comp.Patches {
		used[p.Path] = true
		ms := byFile[p.Path]
		if len(ms) != 1 {
			t.Fatalf("deploy/%s: patch %s: %d documents, want 1", outboxDir, p.Path, len(ms))
		}
		raw, err := os.ReadFile(filepath.Join(c.root, "deploy", outboxDir, p.Path))
		if err != nil {
			t.Fatal(err)
		}
		patch, err := yaml.YAMLToJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		switch o := ms[0].Obj.(type) {
		case *appsv1.Deployment:
			d := c.deployments[o.Name]
			if d == nil {
				t.Fatalf("%s patches Deployment %s, which deploy/ does not have", ms[0], o.Name)
			}
			c.deployments[o.Name] = applyPatch(t, d, patch, true)
		case *resiliencyapi.Resiliency:
			r := c.resiliency[o.Name]
			if r == nil {
				t.Fatalf("%s patches Resiliency %s, which deploy/ does not have", ms[0], o.Name)
			}
			c.resiliency[o.Name] = applyPatch(t, r, patch, false)
		default:
			t.Fatalf("%s: a patch of a %T: add it to this test", ms[0], o)
		}
	}
	for file := range byFile {
		if !used[file] {
			t.Errorf("deploy/%s/%s: neither a resource nor a patch of the Component", outboxDir, file)
		}
	}
	return c
}

// applyPatch returns obj with patch applied: as a strategic merge patch
// when kustomize knows obj's schema (a Kubernetes kind), else as a JSON
// merge patch.
func applyPatch[T any](t *testing.T, obj *T, patch []byte, schema bool) *T {
	t.Helper()
	orig, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var merged []byte
	if schema {
		merged, err = strategicpatch.StrategicMergePatch(orig, patch, *obj)
	} else {
		merged, err = jsonMergePatch(orig, patch)
	}
	if err != nil {
		t.Fatalf("patch a %T: %v", obj, err)
	}
	out := new(T)
	if err := json.Unmarshal(merged, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// jsonMergePatch applies patch to doc as RFC 7386 says: objects merged key
// by key, null deletes, anything else replaces.
func jsonMergePatch(doc, patch []byte) ([]byte, error) {
	var d, p any
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(patch, &p); err != nil {
		return nil, err
	}
	var merge func(d, p any) any
	merge = func(d, p any) any {
		pm, ok := p.(map[string]any)
		if !ok {
			return p
		}
		dm, ok := d.(map[string]any)
		if !ok {
			dm = map[string]any{}
		}
		for k, v := range pm {
			if v == nil {
				delete(dm, k)
			} else {
				dm[k] = merge(dm[k], v)
			}
		}
		return dm
	}
	return json.Marshal(merge(d, p))
}

// TestOutboxComponentMatchesLocal: deploy/ with deploy/outbox on passes every
// check deploy/ passes, and it is what make run OUTBOX=1 runs: the
// components and the resiliency of components/outbox/ (as
// TestManifestsMatchLocalComponents compares them), and the publisher in its
// outbox mode with a transactional order store.
func TestOutboxComponentMatchesLocal(t *testing.T) {
	base := loadCluster(t)
	c := withOutbox(t)
	for _, err := range c.check() {
		t.Error(err)
	}
	local, err := filepath.Glob(filepath.Join(c.root, "components", "outbox", "*.yaml"))
	if err != nil || len(local) == 0 {
		t.Fatalf("components/outbox/: %v %v", local, err)
	}
	matchLocal(t, c, local)
	for name := range c.components {
		if base.components[name] == nil {
			if _, err := os.Stat(filepath.Join(c.root, "components", "outbox", name+".yaml")); err != nil {
				t.Errorf("deploy/%s adds component %s, components/outbox/ has no %s.yaml", outboxDir, name, name)
			}
		}
	}
	pub := c.deployments["publisher"]
	if pub == nil {
		t.Fatal("no Deployment publisher")
	}
	cfg := publisherConfig(t, &pub.Spec.Template.Spec.Containers[0])
	if !cfg.Outbox {
		t.Errorf("the publisher with deploy/%s is not in its outbox mode (PUBLISH_OUTBOX)", outboxDir)
	}
	store := cfg.OrderStore
	if s := c.components[store]; s == nil || !strings.HasPrefix(s.Spec.Type, "state.") || meta(s, "outboxPublishPubsub") == "" {
		t.Errorf("the publisher's order store %s is not a state store with outboxPublishPubsub", store)
	}
	// The order store and the outbox's internal topic are the publisher's
	// alone: no other app reads the orders or publishes to the topic.
	outbox := c.outboxComponents()
	if len(outbox) != 2 {
		t.Errorf("the outbox's components %v, want the order store and its internal topic's", outbox)
	}
	for name := range outbox {
		if s := c.components[name]; s == nil {
			t.Errorf("the outbox names component %s, which is not there", name)
		} else if !slices.Equal(s.Scopes, []string{"publisher"}) {
			t.Errorf("component %s of the outbox: scopes %q, want the publisher alone", name, s.Scopes)
		}
	}
	if publisherConfig(t, &base.deployments["publisher"].Spec.Template.Spec.Containers[0]).Outbox {
		t.Error("deploy/ alone runs the publisher in its outbox mode; the plain mode is the default")
	}
}

// publisherConfig is the publisher's Config as the container's environment
// gives it (the publisher's own ParseConfig: its defaults, its checks).
func publisherConfig(t *testing.T, ctr *corev1.Container) publisher.Config {
	t.Helper()
	cfg, err := publisher.ParseConfig(nil, envOf(ctr), io.Discard)
	if err != nil {
		t.Fatalf("the publisher's environment in the manifest: %v", err)
	}
	return cfg
}

// TestOutboxComponentIsOneEditAway: uncommenting the two lines that
// deploy/kustomization.yaml shows turns the Component on, as its comment
// says.
func TestOutboxComponentIsOneEditAway(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "deploy", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^# (components:\n)# (  - ` + outboxDir + `\n)`)
	if !re.Match(b) {
		t.Fatalf("deploy/kustomization.yaml has no commented-out \"components:\" entry for %s", outboxDir)
	}
	on := re.ReplaceAll(b, []byte("$1$2"))
	obj, err := decodeStrict(on)
	if err != nil {
		t.Fatalf("deploy/kustomization.yaml with the lines uncommented: %v", err)
	}
	if k, ok := obj.(*kustomization); !ok || !slices.Equal(k.Components, []string{outboxDir}) {
		t.Fatalf("with the lines uncommented: %+v, want components [%s]", obj, outboxDir)
	}
}
