package publisher

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/testutil"
)

func TestHelpIsForNewcomers(t *testing.T) {
	var out strings.Builder
	_, err := ParseConfig([]string{"-h"}, func(string) string { return "" }, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("ParseConfig(-h) = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{
		"Usage: publisher [flags]",
		"publisher -count 100 -rate 50", "publisher -file orders.jsonl", "cat orders.jsonl | publisher -file -",
		"publisher -count 10000 -rate 2000 -bulk 100",
		"What to publish:", "How fast:", "[PUBLISH_BULK]", "[PUBLISH_METRICS_ADDRESS]", "(default 10)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, out.String())
		}
	}
	// Every flag is in a group, so the usage shows them all.
	var n int
	for _, g := range flagGroups {
		n += len(g.names)
	}
	var defined int
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "  -") {
			defined++
		}
	}
	if defined != n || n != 16 {
		t.Errorf("usage shows %d flags, groups name %d, Config has 16", defined, n)
	}
	var runOut strings.Builder
	if err := Run(t.Context(), []string{"-help"}, func(string) string { return "" }, nil, &runOut); !errors.Is(err, flag.ErrHelp) || !strings.Contains(runOut.String(), "Examples:") {
		t.Fatalf("Run(-help) = %v, printed %q; want nil and the usage", err, runOut.String())
	}
}

func TestRunRejectsBadInputBeforePublishing(t *testing.T) {
	file := filepath.Join(t.TempDir(), "orders.jsonl")
	if err := os.WriteFile(file, []byte("{\"id\":1,\"message\":\"a\"}\n{\"id\":2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := map[string]struct {
		args  []string
		stdin string
		want  []string
	}{
		"bad line in file":  {args: []string{"-file", file}, want: []string{file, "line 2", `"message" is missing`}},
		"bad line on stdin": {args: []string{"-file", "-"}, stdin: "\n\nnot json\n", want: []string{"-: line 3", "not valid JSON"}},
		"missing file":      {args: []string{"-file", file + ".nope"}, want: []string{"no such file"}},
		"bad flag value":    {args: []string{"-bulk", "x"}, want: []string{"-bulk", "invalid value"}},
		"busy metrics port": {args: []string{"-metrics-address", busy.Addr().String()}, want: []string{"metrics address", "in use"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := Run(t.Context(), tc.args, func(string) string { return "" }, strings.NewReader(tc.stdin), io.Discard)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("Run = %v, want an error mentioning %q", err, w)
				}
			}
		})
	}
}

func TestWantProgress(t *testing.T) {
	tests := map[string]struct {
		terminal bool
		cfg      Config
		total    int
		want     bool
	}{
		"short run":           {terminal: true, total: 10},
		"long run":            {terminal: true, total: 100, want: true},
		"forever":             {terminal: true, total: Forever, want: true},
		"file":                {terminal: true, cfg: Config{File: "x"}, total: 3, want: true},
		"long run, not a tty": {total: 1000},
		"file, not a tty":     {cfg: Config{File: "x"}, total: 1000},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := wantProgress(tc.terminal, tc.cfg, tc.total); got != tc.want {
				t.Fatalf("wantProgress = %v, want %v", got, tc.want)
			}
		})
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	if isTerminal(devNull) || isTerminal(&strings.Builder{}) {
		t.Fatal("isTerminal is true for /dev/null or a buffer")
	}
}

func TestPublishForeverUntilStopped(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cfg := testConfig()
	cfg.Count, cfg.Interval, cfg.Bulk = Forever, 0, 7
	f := &fakeClient{}
	published := 0
	p := &Publisher{Client: f, Config: cfg, Log: quiet, Progress: func(n int) {
		if published += n; published >= 50 {
			cancel()
		}
	}}
	sent, err := p.publish(ctx, generated(cfg))
	if !errors.Is(err, context.Canceled) || sent < 50 || sent != len(f.Got) {
		t.Fatalf("publish = %d, %v (fake got %d); want ≥ 50 and context.Canceled", sent, err, len(f.Got))
	}
	for i, req := range f.Got {
		if req.Metadata[order.CloudEventIDKey] != order.CloudEventID(5+int64(i)) {
			t.Fatalf("entry %d has id %s, want %s", i, req.Metadata[order.CloudEventIDKey], order.CloudEventID(5+int64(i)))
		}
	}
}

func TestBulkKeepsTheRate(t *testing.T) {
	cfg := testConfig()
	cfg.Rate, cfg.Bulk = 100, 2 // orders due every 10 ms; batches when orders 1, 3 and 4 are due
	f := &fakeClient{}
	start := time.Now()
	sent, err := PublishOrders(t.Context(), f, cfg, generateN(Config{Count: 5}), quiet)
	if err != nil || sent != 5 {
		t.Fatalf("PublishOrders = %d, %v", sent, err)
	}
	if elapsed := time.Since(start); elapsed < 40*time.Millisecond {
		t.Fatalf("5 orders at 100/s in batches of 2 took %s, want at least 40 ms", elapsed)
	}
	if len(f.Batches) != 3 {
		t.Fatalf("batches %v, want 3", f.Batches)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	m := NewMetrics()
	p := &Publisher{Client: &fakeClient{Failures: 1}, Config: testConfig(), Log: quiet, Metrics: m}
	if _, err := p.PublishOrders(t.Context(), generateN(testConfig())); err != nil {
		t.Fatal(err)
	}
	addr, stop, err := ServeMetrics("127.0.0.1:0", m, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"orders_published_total 3", "orders_publish_retries_total 1", "orders_publish_failures_total 0",
		"orders_publish_seconds_count 3", "go_goroutines", "process_cpu_seconds_total",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// fakeDapr is a Dapr sidecar's gRPC publish API: it fails each bulk entry
// named in failOnce the first time, and records what it accepted.
type fakeDapr struct {
	pb.UnimplementedDaprServer
	mu       sync.Mutex
	failOnce map[string]bool // cloudevent.id
	got      []string        // cloudevent.id of each accepted event
	data     []string
}

func (d *fakeDapr) PublishEvent(_ context.Context, in *pb.PublishEventRequest) (*emptypb.Empty, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.got = append(d.got, in.GetMetadata()[order.CloudEventIDKey])
	d.data = append(d.data, string(in.GetData()))
	return &emptypb.Empty{}, nil
}

func (d *fakeDapr) BulkPublishEventAlpha1(_ context.Context, in *pb.BulkPublishRequest) (*pb.BulkPublishResponse, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	res := &pb.BulkPublishResponse{}
	for _, e := range in.GetEntries() {
		id := e.GetMetadata()[order.CloudEventIDKey]
		if d.failOnce[id] {
			delete(d.failOnce, id)
			res.FailedEntries = append(res.FailedEntries, &pb.BulkPublishResponseFailedEntry{EntryId: e.GetEntryId(), Error: "redis timeout"})
			continue
		}
		if e.GetContentType() != "application/json" {
			return nil, errors.New("content type " + e.GetContentType())
		}
		d.got = append(d.got, id)
		d.data = append(d.data, string(e.GetEvent()))
	}
	return res, nil
}

// TestRunThroughTheSDK runs the program against a fake sidecar over gRPC,
// so the SDK's own bulk publish and its failure reporting are exercised.
func TestRunThroughTheSDK(t *testing.T) {
	for name, bulk := range map[string]string{"single": "1", "bulk": "4"} {
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			d := &fakeDapr{failOnce: map[string]bool{"order-2": true, "order-9": true}}
			pb.RegisterDaprServer(srv, d)
			go srv.Serve(ln) //nolint:errcheck // ends with Stop below
			defer srv.Stop()

			var stderr testutil.SyncBuffer
			args := []string{"-count", "10", "-interval", "0", "-bulk", bulk, "-dapr-address", ln.Addr().String()}
			env := map[string]string{"LOG_FORMAT": "text"}
			if err := Run(t.Context(), args, func(k string) string { return env[k] }, nil, &stderr); err != nil {
				t.Fatalf("Run: %v\n%s", err, stderr.String())
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			seen := map[string]bool{}
			for i, id := range d.got {
				seen[id] = true
				o, err := order.Decode([]byte(d.data[i]))
				if err != nil || order.CloudEventID(o.ID) != id || o.SentAt.IsZero() {
					t.Errorf("event %s carries %s (%v)", id, d.data[i], err)
				}
			}
			if len(seen) != 10 || len(d.got) != 10 {
				t.Errorf("sidecar accepted %v, want order-0 … order-9 once each", d.got)
			}
			out := stderr.String()
			if n := strings.Count(out, "Published order"); n != 10 {
				t.Errorf("%d Published lines, want 10:\n%s", n, out)
			}
			if !strings.Contains(out, "sent=10 failed=0 duration=") || !strings.Contains(out, "rate_per_s=") {
				t.Errorf("no summary with sent, failed, duration and rate:\n%s", out)
			}
			if bulk != "1" && !strings.Contains(out, "retrying the failed entries") {
				t.Errorf("no retry of the failed entries logged:\n%s", out)
			}
		})
	}
}
