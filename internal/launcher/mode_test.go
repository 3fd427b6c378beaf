package launcher

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	if strings.Count(string(before), "\n") != strings.Count(string(after), "\n") || !strings.Contains(string(after), "127.0.0.1:6380") {
		t.Errorf("tuning changed more than the values:\n%s", after)
	}
	if got := strings.Join(ModeThroughput.SubscriberEnv(), " "); got != "BULK_MAX_MESSAGES=200 BULK_MAX_AWAIT=10ms" {
		t.Errorf("subscriber env = %s", got)
	}
}

func TestSetComponentMetadataNamesAMissingItem(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("metadata:\n  - name: a\n    value: \"1\"\n"), 0o644); err != nil {
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
