package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"dapr-pub-sub/internal/appenv"
	"dapr-pub-sub/internal/harness/launcher"
	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/publisher"
)

// TestStoppedSystemLeavesNoProcess runs the system, stops it, and checks in
// /proc that none of its processes, nor anything started with its files,
// is left.
func TestStoppedSystemLeavesNoProcess(t *testing.T) {
	var pids []int
	var resources string
	t.Run("run", func(t *testing.T) {
		s := startSystem(t)
		s.publish(func(c *publisher.Config) { c.Count, c.Interval = 1, 0 })
		s.waitDrained(1, time.Minute)
		for _, p := range s.Processes() {
			pids = append(pids, p.Pid())
		}
		resources = s.Resources
	})
	// redis-server, the retention keeper, the subscriber and the two daprd.
	if len(pids) != 5 {
		t.Fatalf("system had %d processes, want 5", len(pids))
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("process %d is still running after the system stopped", pid)
		}
	}
	if left := processesMentioning(resources); len(left) > 0 {
		t.Errorf("processes still using %s: %v", resources, left)
	}
}

// TestLocalRunShowsTheSeedFlow runs what `make run` runs, on free ports:
// the original example's orders arrive, a curl-style publish arrives, and Ctrl-C
// (cancelling the context) stops every process.
func TestLocalRunShowsTheSeedFlow(t *testing.T) {
	ports, err := proc.FreePorts(7)
	if err != nil {
		t.Fatal(err)
	}
	redisAddr := "127.0.0.1:" + strconv.Itoa(ports[5])
	args := []string{"-count", "3", "-interval", "10ms", "-broker", "redis", "-redis", "redis-server", "-redis-addr", redisAddr,
		"-app-port", strconv.Itoa(ports[0]), "-sub-http-port", strconv.Itoa(ports[1]), "-sub-grpc-port", strconv.Itoa(ports[2]),
		"-pub-http-port", strconv.Itoa(ports[3]), "-pub-grpc-port", strconv.Itoa(ports[4]), "-app-grpc-port", strconv.Itoa(ports[6])}
	// Known secrets, to look for them where they must not be.
	known := proc.NewSecrets(func(string) string { return "" })
	apiToken, redisPassword := known.APIToken, known.RedisPassword
	getenv := func(k string) string {
		switch k {
		case appenv.DaprAPIToken:
			return apiToken
		case "REDIS_PASSWORD":
			return redisPassword
		}
		return os.Getenv(k)
	}
	out := &watchedOutput{t: t}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- launcher.Run(ctx, args, getenv, out, out) }()

	out.waitFor(t, done, "Press Ctrl-C to stop.")
	if !out.has("make deadletters") {
		t.Error("the banner does not say how to see dead letters")
	}
	// The banner comes when the publisher is done; the last order's
	// line may follow it by a few milliseconds.
	for id := range 3 {
		out.waitFor(t, done, fmt.Sprintf(`Received message: {"id": %d, "message": "Hello from publisher - message %d"}`, id, id))
	}
	if !out.has("Using daprd") {
		t.Error("the daprd version in use is not shown")
	}
	// The banner's curl reads the token from .run/dapr-api-token.
	token, err := os.ReadFile(filepath.Join(root, ".run", "dapr-api-token"))
	if err != nil || string(token) != apiToken {
		t.Fatalf(".run/dapr-api-token = %q, %v", token, err)
	}
	pubURL := "http://127.0.0.1:" + strconv.Itoa(ports[3]) + "/v1.0/publish/pubsub/orders"
	if code, body := daprPost(t, pubURL, "", "application/json", `{"id":8,"message":"no token"}`); code != http.StatusUnauthorized {
		t.Errorf("publish without the token = %d %s, want 401", code, body)
	}
	if code, body := daprPost(t, pubURL, string(token), "application/json", `{"id":7,"message":"hi"}`); code != http.StatusNoContent {
		t.Fatalf("publish with the token = %d %s", code, body)
	}
	out.waitFor(t, done, `Received message: {"id": 7, "message": "hi"}`)

	ctrlC(t, cancel, done)
	for _, p := range ports {
		if err := proc.CheckPortFree(p, "", ""); err != nil {
			t.Errorf("after Ctrl-C: %v", err)
		}
	}
	if left := processesMentioning("127.0.0.1:" + strconv.Itoa(ports[5])); len(left) > 0 {
		t.Errorf("redis-server still running: %v", left)
	}
	// Secrets: never printed, never in a file of the repository.
	for _, secret := range []string{redisPassword, apiToken} {
		if out.has(secret) {
			t.Errorf("a secret appeared in the output of the run")
		}
		if files := filesContaining(t, root, secret); len(files) > 0 {
			t.Errorf("a secret is in files of the repository: %v", files)
		}
	}
	if left := processesMentioning("--dapr-http-port " + strconv.Itoa(ports[1])); len(left) > 0 {
		t.Errorf("daprd still running: %v", left)
	}
}

// TestLocalRunRefusesABusyPort checks that a port in use stops the run at
// once with a message naming the port and the fix, before anything starts.
func TestLocalRunRefusesABusyPort(t *testing.T) {
	busy, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Addr: "127.0.0.1:" + strconv.Itoa(busy)}
	go srv.ListenAndServe() //nolint:errcheck // ends with Close below
	defer srv.Close()
	if err := proc.WaitTCP(t.Context(), srv.Addr, nil); err != nil {
		t.Fatal(err)
	}
	out := &watchedOutput{t: t}
	err = launcher.Run(t.Context(), []string{"-app-port", strconv.Itoa(busy)}, os.Getenv, out, out)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("port %d (subscriber app) is already in use", busy)) {
		t.Fatalf("Run with a busy port = %v", err)
	}
}

// filesContaining lists the files under dir (but .git) that contain s.
func filesContaining(t *testing.T, dir, s string) []string {
	var found []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), s) {
				found = append(found, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// processesMentioning lists live processes whose command line contains s.
func processesMentioning(s string) []string {
	var found []string
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmdline, s) && !strings.Contains(cmdline, "go test") && filepath.Base(d) != strconv.Itoa(os.Getpid()) {
			found = append(found, filepath.Base(d)+": "+cmdline)
		}
	}
	return found
}

// watchedOutput collects a Run's output and logs it to the test.
type watchedOutput struct {
	t  *testing.T
	mu sync.Mutex
	b  strings.Builder
}

func (w *watchedOutput) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return w.b.Write(p)
}

func (w *watchedOutput) has(s string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Contains(w.b.String(), s)
}

// waitFor polls until s appears in the output; Run returning first fails.
func (w *watchedOutput) waitFor(t *testing.T, done chan error, s string) {
	t.Helper()
	deadline := time.After(2 * time.Minute)
	for !w.has(s) {
		select {
		case err := <-done:
			t.Fatalf("Run returned (%v) before printing %q", err, s)
		case <-deadline:
			t.Fatalf("%q not printed within 2 minutes", s)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestLocalRunOnTheEmbeddedBroker runs `make run`'s flow with no Redis
// installed-style: miniredis in the launcher, Dapr's in-memory state store;
// and `make run OUTBOX=1`'s there too, the order store Dapr's in-memory one.
func TestLocalRunOnTheEmbeddedBroker(t *testing.T) {
	for _, outbox := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "outbox"}[outbox], func(t *testing.T) {
			ports, err := proc.FreePorts(7)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"-count", "3", "-interval", "10ms", "-broker", "redis", "-redis", "embedded",
				"-redis-addr", "127.0.0.1:" + strconv.Itoa(ports[5]),
				"-app-port", strconv.Itoa(ports[0]), "-sub-http-port", strconv.Itoa(ports[1]), "-sub-grpc-port", strconv.Itoa(ports[2]),
				"-pub-http-port", strconv.Itoa(ports[3]), "-pub-grpc-port", strconv.Itoa(ports[4]), "-app-grpc-port", strconv.Itoa(ports[6])}
			if outbox {
				args = append(args, "-outbox")
			}
			out := &watchedOutput{t: t}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- launcher.Run(ctx, args, os.Getenv, out, out) }()
			for id := range 3 {
				out.waitFor(t, done, fmt.Sprintf(`Received message: {"id": %d,`, id))
			}
			if outbox {
				// Each order went through the store: the publisher says so, and
				// published nothing itself.
				for id := range 3 {
					out.waitFor(t, done, fmt.Sprintf(`"msg":"Stored order; the outbox publishes it","id":%d,`, id))
				}
				if out.has(`"msg":"Published order"`) {
					t.Error("the publisher published an order itself in the outbox mode")
				}
				if !out.has("Outbox mode:") {
					t.Error("the outbox mode is not announced")
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run on the embedded broker: %v", err)
			}
			if !out.has("keeps nothing after exit") || !out.has("in-memory") {
				t.Error("the embedded broker's limits are not announced")
			}
		})
	}
}

// TestLocalRunOnRabbitMQIsQuiet runs `make run BROKER=rabbitmq`'s flow: the
// orders arrive, and RabbitMQ's own lines (hundreds at start-up) go to
// .run/rabbitmq.log, not to the console, which shows a broker's lines only
// at an error level — none in a healthy run.
func TestLocalRunOnRabbitMQIsQuiet(t *testing.T) {
	ports, err := proc.FreePorts(7)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-count", "3", "-interval", "10ms", "-broker", proc.BrokerRabbitMQ, "-redis", "redis-server", "-redis-addr", "127.0.0.1:" + strconv.Itoa(ports[5]),
		"-app-port", strconv.Itoa(ports[0]), "-sub-http-port", strconv.Itoa(ports[1]), "-sub-grpc-port", strconv.Itoa(ports[2]),
		"-pub-http-port", strconv.Itoa(ports[3]), "-pub-grpc-port", strconv.Itoa(ports[4]), "-app-grpc-port", strconv.Itoa(ports[6])}
	out := &watchedOutput{t: t}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- launcher.Run(ctx, args, os.Getenv, out, out) }()
	out.waitFor(t, done, "Press Ctrl-C to stop.")
	for id := range 3 {
		out.waitFor(t, done, fmt.Sprintf(`Received message: {"id": %d, "message": "Hello from publisher - message %d"}`, id, id))
	}
	if !out.has(".run/rabbitmq.log") {
		t.Error("the banner does not say where RabbitMQ's own log is")
	}
	out.mu.Lock()
	console := out.b.String()
	out.mu.Unlock()
	for l := range strings.Lines(console) {
		if strings.HasPrefix(l, "[rabbitmq]") {
			t.Errorf("a RabbitMQ line on the console of a healthy run: %s", l)
		}
	}
	ctrlC(t, cancel, done)
	file, err := os.ReadFile(filepath.Join(root, ".run", "rabbitmq.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(file), "[rabbitmq]"); n < 10 {
		t.Errorf(".run/rabbitmq.log holds %d RabbitMQ lines, want its start-up's", n)
	}
}

// ctrlC does what Ctrl-C does to a Run — cancels its context — and fails
// the test unless Run returns nil within a minute.
func ctrlC(t *testing.T, cancel context.CancelFunc, done chan error) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Ctrl-C = %v, want nil", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not return after Ctrl-C")
	}
}
