package proc

import (
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestBuildOnceBuildsOncePerInput: callers at the same time get one build
// and the same folder; a later call finds it; other contents or another
// salt build into another folder; a failed build is not taken as done.
func TestBuildOnceBuildsOncePerInput(t *testing.T) {
	t.Setenv("DAPR_PUBSUB_CACHE", t.TempDir())
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main"), 0o644); err != nil {
		t.Fatal(err)
	}
	var builds atomic.Int32
	done := func(dir string) bool { _, err := os.Stat(filepath.Join(dir, "out")); return err == nil }
	build := func(dir string) error {
		builds.Add(1)
		return os.WriteFile(filepath.Join(dir, "out"), nil, 0o644)
	}
	dirs := make([]string, 4)
	var wg sync.WaitGroup
	for i := range dirs {
		wg.Go(func() {
			d, err := BuildOnce("tool", dir, []string{"main.go"}, "", done, build)
			if err != nil {
				t.Error(err)
			}
			dirs[i] = d
		})
	}
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Fatalf("%d builds for 4 callers at once, want 1", n)
	}
	for _, d := range dirs[1:] {
		if d != dirs[0] {
			t.Fatalf("folders %q and %q for the same input", dirs[0], d)
		}
	}
	if d, err := BuildOnce("tool", dir, []string{"main.go"}, "", done, build); err != nil || d != dirs[0] || builds.Load() != 1 {
		t.Fatalf("a later call: %q, %v, %d builds; want %q found, 1 build", d, err, builds.Load(), dirs[0])
	}
	salted, err := BuildOnce("tool", dir, []string{"main.go"}, "-ldflags x", done, build)
	if err != nil || salted == dirs[0] || builds.Load() != 2 {
		t.Fatalf("another salt: %q, %v, %d builds; want a new folder, 2 builds", salted, err, builds.Load())
	}
	if err := os.WriteFile(src, []byte("package main // changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	failing := func(string) error { return os.ErrPermission }
	if _, err := BuildOnce("tool", dir, []string{"main.go"}, "", done, failing); err == nil {
		t.Fatal("a failed build returned no error")
	}
	changed, err := BuildOnce("tool", dir, []string{"main.go"}, "", done, build)
	if err != nil || changed == dirs[0] || builds.Load() != 3 {
		t.Fatalf("changed contents after a failed build: %q, %v, %d builds; want a new folder built, 3 builds", changed, err, builds.Load())
	}
}
