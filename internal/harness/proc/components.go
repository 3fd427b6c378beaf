package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CopyComponents copies the Dapr resource files in src to dst, pointing
// every "localhost:6379" at redisAddr, so a run on another port uses the
// same resources as components/.
func CopyComponents(src, dst, redisAddr string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() || (!strings.HasSuffix(e.Name(), ".yaml") && !strings.HasSuffix(e.Name(), ".yml")) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		b = []byte(strings.ReplaceAll(string(b), "localhost:6379", redisAddr))
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// UseInMemoryStateStore replaces the state store in the resources folder
// dir with Dapr's in-memory one: the embedded Redis (miniredis) lacks what
// Dapr's Redis state store asks at start-up (INFO replication).
func UseInMemoryStateStore(dir string) error {
	return os.WriteFile(filepath.Join(dir, "statestore.yaml"), []byte(inMemoryStateStore), 0o644)
}

// UseInMemoryOrderStore makes the outbox's order store in the resources
// folder dir Dapr's in-memory one, with the same outbox settings, for the
// embedded Redis (see UseInMemoryStateStore). It is transactional, as
// Dapr's outbox needs.
func UseInMemoryOrderStore(dir string) error {
	file := filepath.Join(dir, "orderstore.yaml")
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	s := strings.Replace(string(b), "type: state.redis", "type: state.in-memory", 1)
	if s == string(b) {
		return fmt.Errorf("%s: no state.redis to replace", file)
	}
	return os.WriteFile(file, []byte(s), 0o644)
}

const inMemoryStateStore = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
`

// UseSentinels points the Redis components in the resources folder dir
// (pubsub.yaml, statestore.yaml and the files named in more) at Redis with failover: redisHost the
// Sentinels (comma-separated host:port), failover on, and the master name
// they watch. go-redis then follows the primary through a failover.
func UseSentinels(dir, sentinels, master string, more ...string) error {
	for _, f := range append([]string{"pubsub.yaml", "statestore.yaml"}, more...) {
		file := filepath.Join(dir, f)
		if err := SetComponentMetadata(file, map[string]string{"redisHost": sentinels}); err != nil {
			return err
		}
		if err := AddComponentMetadata(file, map[string]string{"failover": "true", "sentinelMasterName": master}); err != nil {
			return err
		}
	}
	return nil
}
