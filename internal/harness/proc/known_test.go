package proc

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The lines daprd 1.18.0 printed in a healthy `make run` (text format) and
// on Kubernetes (JSON), and lines that look alike but are real problems.
const (
	idleText = `[daprd-subscriber] time="2026-12-04T15:20:01Z" level=error msg="redis streams: error reading from stream orders-deadletter: read tcp 127.0.0.1:40112->127.0.0.1:6379: i/o timeout" app_id=subscriber scope=dapr.contrib type=log ver=1.18.0`
	idleJSON = `{"app_id":"subscriber","level":"error","msg":"redis streams: error reading from stream orders: read tcp 10.244.0.7:51234->10.96.0.20:6379: i/o timeout","scope":"dapr.contrib"}`
	refused  = `[daprd-subscriber] time="2026-12-04T15:20:03Z" level=error msg="redis streams: error reading from stream orders: dial tcp 127.0.0.1:6379: connect: connection refused" scope=dapr.contrib`
	pending  = `[daprd-subscriber] time="2026-12-04T15:20:03Z" level=error msg="error retrieving pending Redis messages: read tcp 127.0.0.1:40112->127.0.0.1:6379: i/o timeout" scope=dapr.contrib`
)

func TestIdleReadTimeoutMatchesOnlyTheIdleRead(t *testing.T) {
	for name, tc := range map[string]struct {
		line string
		want bool
	}{
		"text":                   {idleText, true},
		"json":                   {idleJSON, true},
		"refused":                {refused, false},
		"pending read timed out": {pending, false},
		"app line":               {`[subscriber] Received message: {"id": 1, "message": "i/o timeout"}`, false},
	} {
		t.Run(name, func(t *testing.T) {
			if got := IdleReadTimeout.Match.MatchString(tc.line); got != tc.want {
				t.Errorf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFolderExplainsOnceCountsAndPassesTheRest(t *testing.T) {
	var out bytes.Buffer
	f := NewFolder(&out, KnownDaprLines)
	// Lines arrive whole, split, and several in one write.
	for _, w := range []string{
		"[subscriber] ready\n",
		idleText + "\n",
		idleText[:40], idleText[40:] + "\n" + refused + "\n",
		idleText + "\n" + pending + "\n",
		"no newline yet",
	} {
		if n, err := f.Write([]byte(w)); err != nil || n != len(w) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{
		"[subscriber] ready",
		"[daprd-subscriber] note: " + IdleReadTimeout.Why + "; see " + IdleReadTimeout.Report + ". Lines like it are counted, not shown.",
		refused,
		pending,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if c := f.Counts(); c[IdleReadTimeout.Name] != 3 || len(c) != 1 {
		t.Errorf("Counts = %v, want 3 idle reads", c)
	}
	if s := f.Summary(); s != "Known daprd lines folded: 3 × idle-stream read timeout (docs/upstream-redis-pubsub-blocking-read.md)" {
		t.Errorf("Summary = %q", s)
	}
	if s := NewFolder(&out, KnownDaprLines).Summary(); s != "" {
		t.Errorf("Summary of nothing folded = %q, want empty", s)
	}
}

// TestTheFilterDocumentedIsTheOneFolded: docs/operations.md tells operators
// on Kubernetes to drop the known lines with these expressions; they must
// be the ones make run folds with, and the notes must point at a page that
// exists (docs/docs_test.go checks the anchors of the pages' own links).
func TestTheFilterDocumentedIsTheOneFolded(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range KnownDaprLines {
		path, _, _ := strings.Cut(k.Report, "#")
		if _, err := os.Stat(filepath.Join(root, path)); err != nil {
			t.Errorf("%s: its note points at %s: %v", k.Name, k.Report, err)
		}
		ops, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
		if err != nil {
			t.Fatal(err)
		}
		want := 2 // the table and the Fluent Bit filter
		if k.Name == IdleReadTimeout.Name {
			want = 3 // and the Vector example
		}
		if n := strings.Count(string(ops), k.Match.String()); n < want {
			t.Errorf("docs/operations.md gives the expression %q %d times, want %d", k.Match.String(), n, want)
		}
	}
}
