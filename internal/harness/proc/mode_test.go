package proc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestThroughputModeTunesTheShippedComponent(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := CopyComponents(filepath.Join(root, "components"), dir, "127.0.0.1:6380"); err != nil {
		t.Fatal(err)
	}
	if err := ModeLatency.Apply(dir, BrokerRedis); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "pubsub.yaml"))
	if err := ModeThroughput.Apply(dir, BrokerRedis); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "pubsub.yaml"))
	for _, want := range []string{"- name: concurrency\n      value: \"400\"", "- name: queueDepth\n      value: \"400\""} {
		if !strings.Contains(string(after), want) {
			t.Errorf("tuned pubsub.yaml lacks %q:\n%s", want, after)
		}
		if strings.Contains(string(before), want) {
			t.Errorf("the latency mode already had %q", want)
		}
	}
	if strings.Count(string(before), "#") != strings.Count(string(after), "#") || !strings.Contains(string(after), "127.0.0.1:6380") {
		t.Errorf("tuning lost comments or the address:\n%s", after)
	}
	if batch, await := ModeThroughput.Bulk(); batch != 200 || await != 10*time.Millisecond {
		t.Errorf("throughput bulk = %d, %s", batch, await)
	}
	if batch, _ := ModeLatency.Bulk(); batch != 0 {
		t.Errorf("latency bulk = %d, want off", batch)
	}
}

func TestSetComponentMetadataNamesAMissingItem(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("spec:\n  metadata:\n    - name: a\n      value: \"1\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := SetComponentMetadata(file, map[string]string{"b": "2"})
	if err == nil || !strings.Contains(err.Error(), `"b"`) {
		t.Fatalf("err = %v, want it to name the missing item", err)
	}
	if _, err := ParseMode("fast"); err == nil {
		t.Fatal("ParseMode accepted an unknown mode")
	}
}

func TestUseSentinels(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := CopyComponents(filepath.Join(root, "components"), dir, "127.0.0.1:6400"); err != nil {
		t.Fatal(err)
	}
	// The record store's component too, when it runs (system.Start names
	// it): every Redis component pointed at the Sentinels in one call.
	if err := CopyComponents(filepath.Join(root, "components", "records"), dir, "127.0.0.1:6400"); err != nil {
		t.Fatal(err)
	}
	if err := UseSentinels(dir, "198.51.100.11:26379,198.51.100.12:26379", "orders", "records.yaml"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"pubsub.yaml", "statestore.yaml", "records.yaml"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Spec struct {
				Metadata []struct{ Name, Value string }
			}
		}
		if err := yaml.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, m := range c.Spec.Metadata {
			got[m.Name] = m.Value
		}
		if got["redisHost"] != "198.51.100.11:26379,198.51.100.12:26379" || got["failover"] != "true" || got["sentinelMasterName"] != "orders" {
			t.Errorf("%s: metadata %v", f, got)
		}
	}
	if err := UseSentinels(dir, "x:1", "orders"); err == nil {
		t.Error("adding failover twice: want an error")
	}
}
