package deploy

// This file: deploy/ kept in step with components/ and config/.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	commonapi "github.com/dapr/dapr/pkg/apis/common"
	componentsapi "github.com/dapr/dapr/pkg/apis/components/v1alpha1"
	configapi "github.com/dapr/dapr/pkg/apis/configuration/v1alpha1"
	resiliencyapi "github.com/dapr/dapr/pkg/apis/resiliency/v1alpha1"
)

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
	matchLocal(t, c, local)
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

// matchLocal checks the components and resiliencies of the local files
// against their twins of the same name in c: each component as
// compareComponents compares them, each resiliency with the same spec and
// scopes.
func matchLocal(t *testing.T, c *cluster, paths []string) {
	t.Helper()
	for _, path := range paths {
		switch o := loadFile[any](t, path).(type) {
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
				a, _ := json.Marshal(k.Spec)
				b, _ := json.Marshal(o.Spec)
				t.Errorf("resiliency %s differs from %s:\n deploy: %s\n local:  %s", o.Name, path, a, b)
			}
		default:
			t.Errorf("%s: a %T: add it to this test", path, o)
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
