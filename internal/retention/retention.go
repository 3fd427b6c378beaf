// Package retention keeps what the system writes to Redis bounded without
// breaking its guarantees: it trims the topics' streams to what no consumer
// group still needs and to the retention window W, removes consumers that
// hold nothing, and reports the backlog (length, lag, pending, oldest pending
// age, redeliveries, bytes) as Prometheus metrics.
//
// It is an operator process beside the apps (cmd/retention): the apps keep
// talking only to Dapr. If it stops, nothing breaks; memory grows again.
//
// The invariant it keeps with the subscriber's record TTL (W plus a
// margin): an order can only be delivered again while its dedupe record
// still exists. Entries older than W are trimmed once every group has read
// and acknowledged them; an entry a group still needs is never trimmed, and
// when one is older than W the keeper says so (a WARN line and
// retention_window_exceeded), because its record may expire before it is
// redelivered.
package retention

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config is what the keeper keeps.
type Config struct {
	// Streams are the topic streams (Dapr's Redis pub/sub names each
	// stream after its topic): orders and orders-deadletter.
	Streams []string
	// Window is W: entries older than this are trimmed once no group
	// needs them.
	Window time.Duration
	// ConsumerIdle: a consumer idle this long with nothing pending is
	// removed from its group; 0 is Window.
	ConsumerIdle time.Duration
	// Interval between passes; 0 is 10 s.
	Interval time.Duration

	// The program's settings (Run), beside the keeper's own above.

	RedisAddr     string   // the Redis of the pubsub component (REDIS_ADDR)
	RedisPassword string   // REDIS_PASSWORD; a secret, no flag
	Sentinels     []string // Redis with failover: the Sentinels, host:port (REDIS_SENTINELS), instead of RedisAddr
	MasterName    string   // the master name the Sentinels watch (REDIS_MASTER_NAME)
	// MetricsAddress is where /metrics, /backlog and /healthz are served
	// (METRICS_ADDRESS).
	MetricsAddress      string
	LogLevel, LogFormat string // LOG_LEVEL, LOG_FORMAT
}

// Keeper runs the passes.
type Keeper struct {
	rdb     *redis.Client
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time

	mu   sync.Mutex
	last Backlog // what the last pass saw
}

// New returns a keeper for rdb. metrics may be nil.
func New(rdb *redis.Client, cfg Config, metrics *Metrics, log *slog.Logger) *Keeper {
	if cfg.ConsumerIdle == 0 {
		cfg.ConsumerIdle = cfg.Window
	}
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Second
	}
	return &Keeper{rdb: rdb, cfg: cfg, log: log, metrics: metrics, now: time.Now}
}

// Run makes a pass every Interval until ctx is done. A failed pass is
// logged and counted; the next one tries again.
func (k *Keeper) Run(ctx context.Context) {
	t := time.NewTicker(k.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := k.Pass(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("Retention pass failed; trying again", "err", err, "in", k.cfg.Interval.String())
			k.metrics.passFailed()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// StreamReport is what one pass did to and saw in one stream.
type StreamReport struct {
	Stream string
	MinID  string // entries below it were trimmed (or there were none)
	Needed string // the oldest entry a group still needs; "" for none
	// WindowExceeded: Needed is older than the window.
	WindowExceeded bool
	Trimmed        int64
	Length         int64
	Bytes          int64
	Groups         []GroupReport
	Removed        []Consumer // consumers removed
}

// Consumer is one consumer of a consumer group.
type Consumer struct{ Group, Name string }

// GroupReport is one consumer group's backlog.
type GroupReport struct {
	Name          string
	Lag           int64 // entries not read yet (-1: unknown)
	Pending       int64 // read, not acknowledged
	OldestPending time.Duration
	Redeliveries  int64 // extra deliveries of the oldest pending entries (up to 1,000)
}

// Pass trims every stream, removes idle consumers and records the metrics,
// once. Streams that do not exist yet are skipped.
func (k *Keeper) Pass(ctx context.Context) ([]StreamReport, error) {
	var reports []StreamReport
	var errs []error
	for _, stream := range k.cfg.Streams {
		r, err := k.stream(ctx, stream)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", stream, err))
			continue
		}
		if r != nil {
			reports = append(reports, *r)
			k.metrics.observe(*r)
		}
	}
	k.metrics.passDone()
	err := errors.Join(errs...)
	k.remember(reports, err)
	return reports, err
}

func (k *Keeper) stream(ctx context.Context, stream string) (*StreamReport, error) {
	n, err := k.rdb.Exists(ctx, stream).Result()
	if err != nil || n == 0 {
		return nil, err
	}
	cutoff := k.now().Add(-k.cfg.Window)
	res, err := trimScript.Run(ctx, k.rdb, []string{stream}, strconv.FormatInt(cutoff.UnixMilli(), 10)+"-0").Slice()
	if err != nil {
		return nil, fmt.Errorf("trim: %w", err)
	}
	r := &StreamReport{Stream: stream, MinID: res[0].(string), Trimmed: res[1].(int64), Needed: res[2].(string)}
	ms, ok := idMillis(r.Needed)
	r.WindowExceeded = ok && ms < cutoff.UnixMilli()
	if r.WindowExceeded {
		k.log.Warn("An entry older than the retention window is still unread or unacknowledged: it is kept, but its order's record may expire before it is redelivered",
			"stream", stream, "oldest_needed", r.Needed, "age", k.now().Sub(time.UnixMilli(ms)).Round(time.Second).String(), "window", k.cfg.Window.String())
	}
	if r.Length, err = k.rdb.XLen(ctx, stream).Result(); err != nil {
		return nil, err
	}
	r.Bytes, _ = k.rdb.MemoryUsage(ctx, stream, 0).Result() // SAMPLES 0: exact
	groups, err := k.rdb.XInfoGroups(ctx, stream).Result()
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		removed, err := idleScript.Run(ctx, k.rdb, []string{stream}, g.Name, k.cfg.ConsumerIdle.Milliseconds()).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("remove idle consumers of %s: %w", g.Name, err)
		}
		for _, c := range removed {
			r.Removed = append(r.Removed, Consumer{g.Name, c})
			k.log.Info("Removed an idle consumer that held nothing", "stream", stream, "group", g.Name, "consumer", c)
		}
		gr := GroupReport{Name: g.Name, Lag: g.Lag, Pending: g.Pending}
		if g.Pending > 0 {
			p, err := k.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: g.Name, Start: "-", End: "+", Count: 1000}).Result()
			if err != nil {
				return nil, err
			}
			for i, e := range p {
				if i == 0 {
					if ms, ok := idMillis(e.ID); ok {
						gr.OldestPending = k.now().Sub(time.UnixMilli(ms))
					}
				}
				gr.Redeliveries += e.RetryCount - 1
			}
		}
		r.Groups = append(r.Groups, gr)
	}
	return r, nil
}

// idMillis is the time part of a stream entry id ("1700000000000-3").
func idMillis(id string) (int64, bool) {
	ms, _, ok := strings.Cut(id, "-")
	v, err := strconv.ParseInt(ms, 10, 64)
	return v, ok && err == nil
}

// trimScript trims KEYS[1] below the oldest entry any of its consumer
// groups still needs — its oldest pending entry, else the first entry after
// its last delivered one — and never above ARGV[1], the window's cutoff id.
// It returns {minid, trimmed, needed}. In one script, so no group moves
// between the look and the trim; a group created later (Dapr creates them
// at "0") finds everything newer than the cutoff.
//
//go:embed trim.lua
var trimLua string
var trimScript = redis.NewScript(trimLua)

// idleScript removes from group ARGV[1] of KEYS[1] every consumer with no
// pending entry idle at least ARGV[2] ms, and returns their names. In one
// script, so a consumer cannot take an entry between the look and the
// removal (XGROUP DELCONSUMER drops its pending entries for good).
//
//go:embed idle.lua
var idleLua string
var idleScript = redis.NewScript(idleLua)
