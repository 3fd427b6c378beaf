// Command repro-http-ack reproduces, against a real daprd and Redis, a
// message that daprd acknowledges to the broker although the app never
// received it, on the HTTP app channel; and shows that the gRPC app channel
// does not do so under the same load and faults.
//
// It uses no code of this project but tools/reprokit: one daprd (app id
// "repro") with the pubsub.redis component publishes N messages to topic
// "t" through its own HTTP API while a bare app, in this process, takes them — an HTTP server
// answering {"status":"SUCCESS"}, or with -protocol grpc an AppCallback
// gRPC server answering SUCCESS — and is stopped abruptly (listener and
// connections closed, as a crashed container) and started again every
// -up/-down. Each message is recorded by the app before it answers. When
// the publishing is done and the app stays up, the consumer group is
// drained; every published message not recorded by the app although
// nothing is pending any more was acknowledged without being delivered.
//
// Needs redis-server and daprd (DAPRD=/path/to/daprd, or daprd on PATH, or
// the build `make daprd` caches under ~/.cache/dapr-pub-sub). Run:
//
//	go run ./tools/repro-http-ack -protocol http
//	go run ./tools/repro-http-ack -protocol grpc
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	runtimev1pb "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"dapr-pub-sub/tools/reprokit"
)

func main() { reprokit.Main(run) }

func run() error {
	protocol := flag.String("protocol", "http", "the app channel: http or grpc")
	n := flag.Int("n", 20000, "messages to publish")
	rate := flag.Int("rate", 1000, "messages per second")
	up := flag.Duration("up", 300*time.Millisecond, "how long the app serves between crashes")
	down := flag.Duration("down", 200*time.Millisecond, "how long the app is down")
	maxConcurrency := flag.Int("app-max-concurrency", 0, "daprd --app-max-concurrency (0: unlimited), the mitigation to try")
	keep := flag.Bool("keep", false, "keep the work folder (daprd's debug log) for inspection")
	flag.Parse()
	if *protocol != "http" && *protocol != "grpc" {
		return fmt.Errorf("-protocol must be http or grpc")
	}
	daprd, err := reprokit.FindDaprd()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "repro-http-ack-")
	if err != nil {
		return err
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	ports, err := reprokit.FreePorts(2)
	if err != nil {
		return err
	}
	redisPort, appPort := ports[0], ports[1]

	redis, err := reprokit.StartRedis(dir, redisPort)
	if err != nil {
		return err
	}
	defer reprokit.Stop(redis)

	components := filepath.Join(dir, "components")
	if err := os.MkdirAll(components, 0o755); err != nil {
		return err
	}
	// The component's defaults but for a short redelivery; a resiliency
	// policy that retries a failed delivery until the app answers, so that
	// no failure is ever acknowledged (components-contrib ≥ 1.17 acks a
	// message once the retries run out, pubsub/redis/redis.go:250-261 at
	// v1.18.0); and a declarative subscription, so the app need not answer
	// at start-up. Any message acknowledged that the app did not record is
	// then the channel's doing.
	files := map[string]string{
		"pubsub.yaml": fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
    - name: redisHost
      value: 127.0.0.1:%d
    - name: processingTimeout
      value: "5000"
    - name: redeliverInterval
      value: "1000"
`, redisPort),
		"resiliency.yaml": `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: retry-forever
spec:
  policies:
    retries:
      forever:
        policy: constant
        duration: 50ms
        maxRetries: -1
  targets:
    components:
      pubsub:
        inbound:
          retry: forever
`,
		"subscription.yaml": `apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: t
spec:
  pubsubname: pubsub
  topic: t
  routes:
    default: /t
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(components, name), []byte(body), 0o644); err != nil {
			return err
		}
	}

	app := newApp(*protocol, appPort)
	if err := app.start(); err != nil {
		return err
	}
	defer app.stop()

	extra := []string{"--app-port", strconv.Itoa(appPort), "--app-protocol", *protocol, "--log-level", "debug"}
	if *maxConcurrency > 0 {
		extra = append(extra, "--app-max-concurrency", strconv.Itoa(*maxConcurrency))
	}
	sidecar, err := reprokit.StartSidecar(daprd, dir, "repro", components, extra...)
	if err != nil {
		return err
	}
	defer reprokit.Stop(sidecar.Cmd)
	fmt.Printf("daprd %s, app channel %s, app max concurrency %d: publishing %d messages at %d/s while the app crashes every %s for %s\n",
		sidecar.Version, *protocol, *maxConcurrency, *n, *rate, *up, *down)

	ctx, cancel := context.WithCancel(context.Background())
	type loopResult struct {
		crashes int
		err     error
	}
	crashes := make(chan loopResult, 1)
	go func() {
		n, err := app.crashLoop(ctx, *up, *down)
		crashes <- loopResult{n, err}
	}()
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range *n {
		<-tick.C
		body := fmt.Sprintf(`{"n":%d}`, i)
		resp, err := client.Post(sidecar.URL+"/v1.0/publish/pubsub/t", "application/json", strings.NewReader(body))
		if err != nil {
			cancel()
			return fmt.Errorf("publish %d: %w", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			cancel()
			return fmt.Errorf("publish %d: HTTP %d", i, resp.StatusCode)
		}
	}
	tick.Stop()
	cancel()
	loop := <-crashes // the app is up for good
	if loop.err != nil {
		return loop.err
	}
	crashCount := loop.crashes
	fmt.Printf("published %d, app crashed %d times; waiting until nothing is pending\n", *n, crashCount)

	rc := reprokit.RedisCLI(redisPort)
	drained := func() bool {
		pending, _ := rc("XPENDING", "t", "repro")
		info, _ := rc("XINFO", "GROUPS", "t")
		return strings.HasPrefix(pending, "0\n") && strings.Contains(info, "lag\n0\n")
	}
	if err := reprokit.WaitFor(5*time.Minute, drained); err != nil {
		return fmt.Errorf("the group did not drain: %w", err)
	}
	got := app.received()
	var lost []int
	for i := range *n {
		if got[i] == 0 {
			lost = append(lost, i)
		}
	}
	fmt.Printf("received %d distinct messages of %d; nothing pending; acknowledged but never delivered: %d\n", len(got), *n, len(lost))
	if len(lost) > 0 {
		fmt.Printf("lost: %v\n", head(lost, 20))
		skipped, err := countLines(sidecar.Log, regexp.MustCompile(`skipping status check due to empty response body`))
		if err == nil {
			fmt.Printf("daprd logged \"skipping status check due to empty response body\" %d times (the app always answers a body)\n", skipped)
		}
		if *keep {
			fmt.Printf("daprd's debug log: %s\n", sidecar.Log)
		}
		return errors.New("messages were acknowledged that the app never received")
	}
	return nil
}

// app is the bare subscriber: it records the "n" of every message before
// answering SUCCESS, and can crash and come back on the same port.
type app struct {
	protocol string
	port     int

	mu   sync.Mutex
	got  map[int]int
	stop func()
}

func newApp(protocol string, port int) *app {
	return &app{protocol: protocol, port: port, got: map[int]int{}}
}

func (a *app) record(n int) {
	a.mu.Lock()
	a.got[n]++
	a.mu.Unlock()
}

func (a *app) received() map[int]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[int]int, len(a.got))
	for k, v := range a.got {
		out[k] = v
	}
	return out
}

// start serves on the app port until crash or stop.
func (a *app) start() error {
	var lis net.Listener
	var err error
	// The port was just freed by a crash: retry briefly.
	for range 50 {
		if lis, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(a.port)); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	if a.protocol == "grpc" {
		s := grpc.NewServer()
		runtimev1pb.RegisterAppCallbackServer(s, &callback{app: a})
		go func() { _ = s.Serve(lis) }()
		a.stop = s.Stop // closes the listener and every connection at once
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /t", func(w http.ResponseWriter, r *http.Request) {
		var ce struct {
			Data struct {
				N *int `json:"n"`
			} `json:"data"`
		}
		if err := json.NewDecoder(r.Body).Decode(&ce); err != nil || ce.Data.N == nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		a.record(*ce.Data.N)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"SUCCESS"}`))
	})
	s := &http.Server{Handler: mux}
	go func() { _ = s.Serve(lis) }()
	a.stop = func() { _ = s.Close() } // closes the listener and every connection at once
	return nil
}

// crashLoop stops the app abruptly every up, for down, until ctx ends, and
// returns how often it did; the app is up when it returns.
func (a *app) crashLoop(ctx context.Context, up, down time.Duration) (int, error) {
	crashes := 0
	for {
		select {
		case <-ctx.Done():
			return crashes, nil
		case <-time.After(up):
		}
		a.stop()
		crashes++
		time.Sleep(down)
		if err := a.start(); err != nil {
			return crashes, fmt.Errorf("restart the app: %w", err)
		}
	}
}

// callback is the gRPC app: SUCCESS for every event it could record.
type callback struct {
	runtimev1pb.UnimplementedAppCallbackServer
	app *app
}

func (c *callback) ListTopicSubscriptions(context.Context, *emptypb.Empty) (*runtimev1pb.ListTopicSubscriptionsResponse, error) {
	return &runtimev1pb.ListTopicSubscriptionsResponse{}, nil // the declarative subscription
}

func (c *callback) OnTopicEvent(_ context.Context, in *runtimev1pb.TopicEventRequest) (*runtimev1pb.TopicEventResponse, error) {
	var data struct {
		N *int `json:"n"`
	}
	if err := json.Unmarshal(in.GetData(), &data); err != nil || data.N == nil {
		return &runtimev1pb.TopicEventResponse{Status: runtimev1pb.TopicEventResponse_DROP}, nil
	}
	c.app.record(*data.N)
	return &runtimev1pb.TopicEventResponse{Status: runtimev1pb.TopicEventResponse_SUCCESS}, nil
}

func countLines(file string, re *regexp.Regexp) (int, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if re.Match(sc.Bytes()) {
			n++
		}
	}
	return n, sc.Err()
}

func head(xs []int, n int) []int {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}
