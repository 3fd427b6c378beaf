package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/redis/go-redis/v9"

	"dapr-pub-sub/internal/harness/proc"
	"dapr-pub-sub/internal/harness/system"
	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/publisher"
	"dapr-pub-sub/internal/sidecar"
	"dapr-pub-sub/internal/store"
	"dapr-pub-sub/internal/subscriber"
)

// Publish paths to the publisher's sidecar.
const (
	publishGRPC = "grpc" // the SDK's PublishEvent, one order per call
	publishHTTP = "http" // POST /v1.0/publish, one order per call
	publishBulk = "bulk" // the SDK's PublishEvents, a batch per call
	// publishOutbox stores each order in a state transaction (the
	// publisher's outbox mode); Dapr's outbox publishes it on commit.
	publishOutbox = "outbox"
)

// daprScenario is the project's system: the bench process publishes through
// its own daprd (as the publisher app does), the real subscriber binary
// takes the orders from its daprd and applies each once to the state
// store. A delivery counts when its effect is recorded: the record's
// processed_at is the delivery time, read back from Redis after the run.
type daprScenario struct {
	name    string
	publish string         // publishGRPC, publishHTTP, publishBulk or publishOutbox
	batch   int            // orders per PublishEvents call (publishBulk)
	mode    proc.Mode      // the subscriber's mode
	channel system.Channel // how daprd delivers; "" is the mode's default
	// daprArgs are more flags for the subscriber's daprd.
	daprArgs []string
	// bare runs BareApp instead of the subscriber: Dapr's own floor.
	bare bool
	// byLines times each delivery by the subscriber's "Received message"
	// line (as the harness reads it) instead of its record.
	byLines bool
	// app changes the subscriber app's settings (nil: none), and
	// component overrides items of the pubsub component's metadata.
	app       func(*subscriber.Config)
	component map[string]string
	// goEnv is Go runtime settings (GOGC=…, GOMAXPROCS=…) for both
	// daprd and the subscriber app.
	goEnv []string
	// samplingRate, when set, replaces the Configuration's tracing
	// samplingRate ("1" in config/config.yaml) in both sidecars.
	samplingRate string
	// records keeps the records in the record store (system.RecordStore).
	records bool
	// experiment: run only when named in -scenarios (a setting measured
	// against its default, not part of every run).
	experiment bool
	env        *daprEnv // shared by every Dapr scenario of a run
}

// daprEnv is what the Dapr scenarios of one bench run share: daprd and the
// apps, found or built once.
type daprEnv struct {
	once    sync.Once
	err     error
	version string // the Dapr runtime version; "" for the default
	tools   system.Tools
	cleanup func()
}

func (e *daprEnv) prepare(ctx context.Context, out io.Writer) error {
	e.once.Do(func() { e.tools, e.cleanup, e.err = system.Prepare(ctx, e.version, out) })
	return e.err
}

// Close removes the built apps; the runner calls it once the run is over.
func (s daprScenario) Close() error {
	if s.env.cleanup != nil {
		s.env.cleanup()
		s.env.cleanup = nil
	}
	return nil
}

// daprScenarios are the project's system in its two modes and with each
// way to publish.
func daprScenarios(env *daprEnv) []Scenario {
	return []Scenario{
		daprScenario{name: "dapr-grpc", publish: publishGRPC, mode: proc.ModeLatency, env: env},
		// The latency mode on the stream channel (streaming
		// subscriptions), on the original example's HTTP app channel, and on that with
		// the mitigation of its race (one delivery at a time).
		daprScenario{name: "dapr-grpc-stream", publish: publishGRPC, mode: proc.ModeLatency, channel: system.ChannelStream, env: env},
		daprScenario{name: "dapr-grpc-httpch", publish: publishGRPC, mode: proc.ModeLatency, channel: system.ChannelHTTP, env: env},
		daprScenario{name: "dapr-grpc-httpch-mc1", publish: publishGRPC, mode: proc.ModeLatency, channel: system.ChannelHTTP,
			daprArgs: []string{"--app-max-concurrency", "1"}, env: env},
		daprScenario{name: "dapr-http", publish: publishHTTP, mode: proc.ModeLatency, env: env},
		daprScenario{name: "dapr-bulk10", publish: publishBulk, batch: 10, mode: proc.ModeThroughput, env: env},
		daprScenario{name: "dapr-bulk100", publish: publishBulk, batch: 100, mode: proc.ModeThroughput, env: env},
		// Both modes with the records in the record store (a pluggable
		// state store inserting a batch in one Redis script) instead of
		// Dapr's Redis store (an EVAL and an EXPIRE per record).
		daprScenario{name: "dapr-grpc-records", publish: publishGRPC, mode: proc.ModeLatency, records: true, env: env},
		daprScenario{name: "dapr-bulk100-records", publish: publishBulk, batch: 100, mode: proc.ModeThroughput, records: true, env: env},
		// Calibration: the throughput mode without the record (no
		// exactly-once), so that the record's whole cost, in every
		// process it touches, is one subtraction from dapr-bulk100.
		// Deliveries are timed by the subscriber's lines.
		daprScenario{name: NoRecordScenario, publish: publishBulk, batch: 100, mode: proc.ModeThroughput,
			app: func(c *subscriber.Config) { c.Faults.NoRecord = true }, byLines: true, env: env},
		// The ordered mode (each order's events applied in sequence,
		// store.Lives) in both modes: each order here is a life of one
		// event, so the rows price the ordered path against the record's
		// on the same traffic. Timed by the subscriber's lines (there is
		// no record to count).
		daprScenario{name: "dapr-grpc-ordered", publish: publishGRPC, mode: proc.ModeLatency, app: orderedMode, byLines: true, env: env},
		daprScenario{name: "dapr-bulk100-ordered", publish: publishBulk, batch: 100, mode: proc.ModeThroughput, app: orderedMode, byLines: true, env: env},
		// Experiments: both modes without the per-order "Received
		// message" line (its whole price, by difference).
		daprScenario{name: "dapr-grpc-noline", publish: publishGRPC, mode: proc.ModeLatency, app: noLine, experiment: true, env: env},
		daprScenario{name: "dapr-bulk100-noline", publish: publishBulk, batch: 100, mode: proc.ModeThroughput, app: noLine, experiment: true, env: env},
		// The same path into an app that only acks: what Dapr itself costs.
		daprScenario{name: "dapr-bare", publish: publishBulk, batch: 100, mode: proc.ModeThroughput, bare: true, env: env},
		// The publisher's outbox mode against dapr-grpc: the order stored,
		// Dapr's outbox publishing it. An experiment: its 1 s wait per
		// event makes a fixed-rate run long.
		daprScenario{name: "dapr-outbox", publish: publishOutbox, mode: proc.ModeLatency, experiment: true, env: env},
		// Experiments: one setting against the default above.
		daprScenario{name: "dapr-bulk100-rb1", publish: publishBulk, batch: 100, mode: proc.ModeThroughput,
			app: recordsOneByOne, experiment: true, env: env}, // records written one by one
		daprScenario{name: "dapr-grpc-rb1", publish: publishGRPC, mode: proc.ModeLatency,
			app: recordsOneByOne, experiment: true, env: env},
		// Fuller record writes: fewer flushers in flight (each call
		// carries more records), or fewer bulk workers (fewer records
		// waiting at once), against the shipped 4 flushers and 32 workers.
		daprScenario{name: "dapr-bulk100-rf1", publish: publishBulk, batch: 100, mode: proc.ModeThroughput,
			app: func(c *subscriber.Config) { c.RecordFlushers = 1 }, experiment: true, env: env},
		daprScenario{name: "dapr-bulk100-rf2", publish: publishBulk, batch: 100, mode: proc.ModeThroughput,
			app: func(c *subscriber.Config) { c.RecordFlushers = 2 }, experiment: true, env: env},
		// Tracing off in both sidecars (config/config.yaml samples every
		// request): what building the spans costs.
		daprScenario{name: "dapr-bulk100-sample0", publish: publishBulk, batch: 100, mode: proc.ModeThroughput,
			samplingRate: "0", experiment: true, env: env},
		daprScenario{name: "dapr-grpc-sample0", publish: publishGRPC, mode: proc.ModeLatency,
			samplingRate: "0", experiment: true, env: env},
		daprScenario{name: "dapr-bulk100-w100", publish: publishBulk, batch: 100, mode: proc.ModeThroughput,
			app: func(c *subscriber.Config) { c.Bulk.Workers = 100 }, experiment: true, env: env},
		daprScenario{name: "dapr-grpc-nottl", publish: publishGRPC, mode: proc.ModeLatency,
			app: func(c *subscriber.Config) { c.RetentionWindow = 0 }, experiment: true, env: env}, // records without a TTL: no EXPIRE per record
		daprScenario{name: "dapr-grpc-c32", publish: publishGRPC, mode: proc.ModeLatency,
			component: map[string]string{"concurrency": "32", "queueDepth": "32"}, experiment: true, env: env},
		// The Go runtime of both sidecars and the app: a collection at
		// twice the live heap instead of at once as much (less GC CPU,
		// more memory), and one OS thread running Go each (four
		// processes share two cores).
		daprScenario{name: "dapr-bulk100-gogc200", publish: publishBulk, batch: 100, mode: proc.ModeThroughput,
			goEnv: []string{"GOGC=200"}, experiment: true, env: env},
		daprScenario{name: "dapr-bulk100-procs1", publish: publishBulk, batch: 100, mode: proc.ModeThroughput,
			goEnv: []string{"GOMAXPROCS=1"}, experiment: true, env: env},
		daprScenario{name: "dapr-grpc-gogc200", publish: publishGRPC, mode: proc.ModeLatency,
			goEnv: []string{"GOGC=200"}, experiment: true, env: env},
		daprScenario{name: "dapr-grpc-procs1", publish: publishGRPC, mode: proc.ModeLatency,
			goEnv: []string{"GOMAXPROCS=1"}, experiment: true, env: env},
	}
}

// orderedMode is the subscriber's ordered mode.
func orderedMode(c *subscriber.Config) { c.Ordered = true }

// noLine applies orders without their "Received message" line.
func noLine(c *subscriber.Config) { c.Faults.NoLine = true }

// recordsOneByOne writes each processed-order record in a state call of
// its own.
func recordsOneByOne(c *subscriber.Config) { c.RecordBatch = 1 }

func (s daprScenario) Name() string { return s.name }

// Run starts the system on p.Redis (emptied first: the stream, the
// consumer groups and the records of earlier runs would replay or dedupe
// this run's orders), runs the load through it and stops it.
func (s daprScenario) Run(ctx context.Context, p Params) (Result, error) {
	if err := s.env.prepare(ctx, p.Out); err != nil {
		return Result{}, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: p.Redis.Addr, Password: p.Redis.Password})
	defer rdb.Close()
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		return Result{}, fmt.Errorf("empty redis: %w", err)
	}
	secrets := proc.NewSecrets(func(string) string { return "" })
	prof, err := newProfiler(p.Profile)
	if err != nil {
		return Result{}, err
	}
	if p.Rate <= 0 {
		prof = nil // profiles of fixed-rate runs only
	}
	rec := NewRecorder(p.Messages)
	node := system.Node{DaprArgs: append(slices.Clone(s.daprArgs), prof.daprArgs("daprd-subscriber")...), RuntimeEnv: s.goEnv,
		Config: func(c *subscriber.Config) {
			c.LogFormat = "json"
			prof.appConfig(c)
			if s.app != nil {
				s.app(c)
			}
		}}
	if s.byLines {
		node.OnLine = func(line string) {
			if id, ok := receivedID(line); ok {
				rec.Deliver(id, time.Now())
			}
		}
	}
	if s.bare {
		exe, err := os.Executable()
		if err != nil {
			return Result{}, err
		}
		node.Command = []string{exe, BareAppArg}
	}
	daprConfig, err := s.daprConfig()
	if err != nil {
		return Result{}, err
	}
	if daprConfig != "" {
		defer os.Remove(daprConfig)
	}
	parts := []system.Part{
		system.Redis{Options: proc.RedisOptions{Source: proc.RedisExisting, Addr: p.Redis.Addr, ExistingPassword: p.Redis.Password}},
		system.PubSub{Metadata: s.component},
	}
	if s.records {
		parts = append(parts, system.RecordStore{})
	}
	if s.publish == publishOutbox {
		parts = append(parts, system.Outbox{})
	}
	parts = append(parts, system.Keeper{}, node, system.PublisherSidecar{Args: prof.daprArgs("daprd-publisher")})
	sys, err := system.Start(ctx, system.Env{
		Tools:   s.env.tools,
		Mode:    s.mode,
		Channel: s.channel,
		Secrets: &secrets,
		// Only errors: the sidecars' output goes to the bench's stderr.
		Dapr: system.Dapr{LogLevel: "error", Env: s.goEnv, Config: daprConfig},
		Out:  p.Out,
	}, parts...)
	if err != nil {
		return Result{}, err
	}
	defer sys.Stop()

	send, closeSend, err := s.sender(sys, p)
	if err != nil {
		return Result{}, err
	}
	defer closeSend()
	collectFn := func(ctx context.Context, rec *Recorder) error { return collect(ctx, sys, rdb, rec, p) }
	switch {
	case s.byLines:
		collectFn = nil // the Recorder has them: wait until they are in
	case s.bare:
		collectFn = func(ctx context.Context, rec *Recorder) error {
			return collectBare(ctx, sys.Sub.Port, sys.Secrets.AppToken, rec, p)
		}
	}
	wait := prof.start(ctx, fmt.Sprintf("%s-%g-%d-%s", s.name, p.Rate, p.Size, p.RunID), time.Duration(float64(p.Messages)/p.Rate*float64(time.Second))-time.Second)
	procs := map[string]int{
		RedisCPU: p.Redis.Pid, "bench (publisher)": os.Getpid(),
		"daprd (publisher)": sys.PubDaprd.Pid(), "daprd (subscriber)": sys.Sub.Daprd.Pid(), "subscriber": sys.Sub.App.Pid(),
	}
	if sys.RecordStore != nil {
		procs[RecordStoreCPU] = sys.RecordStore.Pid()
	}
	res, err := Measure(ctx, p, Measurement{
		Recorder:  rec,
		Processes: procs,
		Send:      send,
		Batch:     max(s.batch, 1),
		Collect:   collectFn,
	})
	if perr := wait(); perr != nil && err == nil {
		err = perr
	}
	res.PayloadBytes = len(Payload(int64(p.Messages-1), p.Size, time.Now()))
	return res, err
}

// daprConfig writes the Configuration of a scenario that changes it to a
// temporary file, and returns its path; "" for config/config.yaml.
func (s daprScenario) daprConfig() (string, error) {
	if s.samplingRate == "" {
		return "", nil
	}
	src := filepath.Join(s.env.tools.Root, "config", "config.yaml")
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	const shipped = `samplingRate: "1"`
	if !bytes.Contains(b, []byte(shipped)) {
		return "", fmt.Errorf("%s has no %s to replace", src, shipped)
	}
	f, err := os.CreateTemp("", "dapr-pub-sub-config-*.yaml")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.Write(bytes.Replace(b, []byte(shipped), []byte(`samplingRate: "`+s.samplingRate+`"`), 1))
	return f.Name(), err
}

// NoRecordScenario is the calibration: the throughput mode without the
// record.
const NoRecordScenario = "dapr-bulk100-norecord"

// receivedID is the order id of a subscriber's "Received message: {"id":
// N, ...}" line.
func receivedID(line string) (int64, bool) {
	rest, ok := strings.CutPrefix(line, `Received message: {"id": `)
	if !ok {
		return 0, false
	}
	end := strings.IndexByte(rest, ',')
	if end < 0 {
		return 0, false
	}
	id, err := strconv.ParseInt(rest[:end], 10, 64)
	return id, err == nil
}

// sender returns the SendFunc for the scenario's publish path.
func (s daprScenario) sender(sys *system.Running, p Params) (SendFunc, func(), error) {
	if s.publish == publishHTTP {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: max(p.Senders, 2)}}
		url := sys.PubDaprd.HTTPURL() + "/v1.0/publish/pubsub/orders?metadata.cloudevent.id="
		return func(ctx context.Context, batch []Outgoing) error {
			for _, m := range batch {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+order.CloudEventID(m.ID),
					bytes.NewReader(Payload(m.ID, p.Size, m.Stamp)))
				if err != nil {
					return err
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("dapr-api-token", sys.Secrets.APIToken)
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					return fmt.Errorf("publish: HTTP %d", resp.StatusCode)
				}
			}
			return nil
		}, client.CloseIdleConnections, nil
	}
	client, err := sidecar.Dial(sys.PubDaprd.GRPCAddr(), sys.Secrets.APIToken, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, nil, err
	}
	closeFn := func() { client.Close() }
	if s.publish == publishBulk {
		return func(ctx context.Context, batch []Outgoing) error {
			events := make([]any, len(batch))
			for i, m := range batch {
				events[i] = dapr.PublishEventsEvent{
					EntryID: strconv.Itoa(i), Data: Payload(m.ID, p.Size, m.Stamp), ContentType: "application/json",
					Metadata: map[string]string{order.CloudEventIDKey: order.CloudEventID(m.ID)},
				}
			}
			res := client.PublishEvents(ctx, "pubsub", "orders", events)
			if res.Error != nil {
				return fmt.Errorf("bulk publish (%d failed): %w", len(res.FailedEvents), res.Error)
			}
			return nil
		}, closeFn, nil
	}
	if s.publish == publishOutbox {
		return func(ctx context.Context, batch []Outgoing) error {
			for _, m := range batch {
				ops := publisher.OutboxOps(publisher.OrderKey(m.ID), Payload(m.ID, p.Size, m.Stamp))
				if err := client.ExecuteStateTransaction(ctx, "orderstore", nil, ops); err != nil {
					return err
				}
			}
			return nil
		}, closeFn, nil
	}
	return func(ctx context.Context, batch []Outgoing) error {
		for _, m := range batch {
			if err := client.PublishEvent(ctx, "pubsub", "orders", Payload(m.ID, p.Size, m.Stamp),
				dapr.PublishEventWithContentType("application/json"),
				dapr.PublishEventWithMetadata(map[string]string{order.CloudEventIDKey: order.CloudEventID(m.ID)})); err != nil {
				return err
			}
		}
		return nil
	}, closeFn, nil
}

// collect waits until the subscriber has applied every sent order, or made
// no progress for p.Idle, then reads each order's record from the state
// store and hands the Recorder its processed_at. A record written more than
// once (an effect applied twice) counts as a duplicate.
func collect(ctx context.Context, sys *system.Running, rdb *redis.Client, rec *Recorder, p Params) error {
	base := "http://127.0.0.1:" + strconv.Itoa(sys.Sub.Port)
	if err := waitProcessed(ctx, p, rec, func(ctx context.Context) (int64, error) { return appStats(ctx, base, sys.Secrets.AppToken) }); err != nil {
		return err
	}
	const chunk = 5000
	for first := 0; first < p.Messages; first += chunk {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.SliceCmd, 0, chunk)
		for id := first; id < min(first+chunk, p.Messages); id++ {
			cmds = append(cmds, pipe.HMGet(ctx, "statestore||"+proc.SubscriberID+"/order/"+strconv.Itoa(id), "data", "version"))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("read records: %w", err)
		}
		for i, c := range cmds {
			vals := c.Val()
			data, _ := vals[0].(string)
			if data == "" {
				continue // never processed: lost
			}
			var r store.Processed
			if err := json.Unmarshal([]byte(data), &r); err != nil {
				return fmt.Errorf("record of order %d: %w", first+i, err)
			}
			version, _ := vals[1].(string)
			for range max(atoi(version), 1) {
				rec.Deliver(int64(first+i), r.ProcessedAt)
			}
		}
	}
	return nil
}

// waitProcessed polls processed until it reaches what was sent without
// error, or makes no progress for p.Idle.
func waitProcessed(ctx context.Context, p Params, rec *Recorder, processed func(context.Context) (int64, error)) error {
	want := p.Messages - rec.Result().SendFailed
	last, lastChange := int64(-1), time.Now()
	for {
		n, err := processed(ctx)
		if err != nil {
			return err
		}
		if n != last {
			last, lastChange = n, time.Now()
		}
		if n >= int64(want) || time.Since(lastChange) > p.Idle {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// appStats asks the app at base how many orders it has applied (GET /stats).
func appStats(ctx context.Context, base, token string) (int64, error) {
	var stats struct {
		Processed int64 `json:"processed"`
	}
	if err := getJSON(ctx, base+"/stats", token, &stats); err != nil {
		return 0, fmt.Errorf("app /stats: %w", err)
	}
	return stats.Processed, nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
