package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// SelfCPU is the CPU accounting name of this process, which runs both the
// producer and the consumer of the in-process baselines.
const SelfCPU = "bench (producer+consumer)"

// RedisCPU is the CPU accounting name of the shared redis-server.
const RedisCPU = "redis-server"

// RecordStoreCPU is the CPU accounting name of the record store, in the
// scenarios that run it.
const RecordStoreCPU = "recordstore"

// redisStreams is the raw Redis Streams baseline with go-redis. One message
// per XADD and one XACK per message; or, pipelined, up to batch XADDs per
// round trip and one XACK for all the ids a read returned.
type redisStreams struct {
	pipelined bool
	batch     int // messages per pipeline (pipelined only)
}

// Name implements Scenario.
func (s redisStreams) Name() string {
	if s.pipelined {
		return "redis-pipelined"
	}
	return "redis"
}

// readCount is how many entries one XREADGROUP asks for.
const readCount = 100

// Run implements Scenario.
func (s redisStreams) Run(ctx context.Context, p Params) (Result, error) {
	stream, group := "bench:"+p.RunID, "bench"
	newClient := func(pool int) *redis.Client {
		return redis.NewClient(&redis.Options{Addr: p.Redis.Addr, Password: p.Redis.Password, PoolSize: pool})
	}
	prod := newClient(p.Senders + 2)
	defer prod.Close()
	cons := newClient(2)
	defer cons.Close()
	if err := cons.XGroupCreateMkStream(ctx, stream, group, "0").Err(); err != nil {
		return Result{}, fmt.Errorf("create group: %w", err)
	}
	defer deleteStream(ctx, prod, stream, p.Out)

	rec := NewRecorder(p.Messages)
	cctx, stop := context.WithCancel(ctx)
	var consumerErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		consumerErr = s.consume(cctx, cons, stream, group, rec)
	}()

	send := func(ctx context.Context, batch []Outgoing) error {
		if !s.pipelined {
			m := batch[0]
			return prod.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", Payload(m.ID, p.Size, m.Stamp)}}).Err()
		}
		_, err := prod.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, m := range batch {
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"data", Payload(m.ID, p.Size, m.Stamp)}})
			}
			return nil
		})
		return err
	}
	batch := 1
	if s.pipelined {
		batch = s.batch
	}
	res, err := Measure(ctx, p, Measurement{
		Recorder:  rec,
		Processes: map[string]int{RedisCPU: p.Redis.Pid, SelfCPU: os.Getpid()},
		Send:      send,
		Batch:     batch,
	})
	stop()
	wg.Wait()
	res.PayloadBytes = len(Payload(int64(p.Messages-1), p.Size, time.Now()))
	return res, errors.Join(err, consumerErr)
}

// consume reads the group as one consumer until ctx ends, decodes every
// message, records its delivery, then acknowledges it.
func (s redisStreams) consume(ctx context.Context, c *redis.Client, stream, group string, rec *Recorder) error {
	ids := make([]string, 0, readCount)
	for ctx.Err() == nil {
		// A short block, so that the loop notices ctx ending: go-redis
		// cannot interrupt a blocked read.
		streams, err := c.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: group, Consumer: "c1", Streams: []string{stream, ">"},
			Count: readCount, Block: 100 * time.Millisecond,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("xreadgroup: %w", err)
		}
		ids = ids[:0]
		for _, st := range streams {
			for _, m := range st.Messages {
				data, _ := m.Values["data"].(string)
				id, err := DecodePayload([]byte(data))
				if err != nil {
					return err
				}
				rec.Deliver(id, time.Now())
				if s.pipelined {
					ids = append(ids, m.ID)
					continue
				}
				if err := c.XAck(ctx, stream, group, m.ID).Err(); err != nil && ctx.Err() == nil {
					return fmt.Errorf("xack: %w", err)
				}
			}
		}
		if len(ids) > 0 {
			if err := c.XAck(ctx, stream, group, ids...).Err(); err != nil && ctx.Err() == nil {
				return fmt.Errorf("xack: %w", err)
			}
		}
	}
	return nil
}

// deleteStream removes a run's stream, reporting a failure to out. The
// run's context may be over; cleaning up does not depend on it.
func deleteStream(ctx context.Context, c *redis.Client, stream string, out io.Writer) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := c.Del(dctx, stream).Err(); err != nil {
		fmt.Fprintf(out, "delete stream %s: %v\n", stream, err)
	}
}

// deleteKeys deletes the keys that match pattern (SCAN, then UNLINK),
// reporting a failure to out.
func deleteKeys(ctx context.Context, c *redis.Client, pattern string, out io.Writer) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	iter := c.Scan(dctx, 0, pattern, 1000).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.Unlink(dctx, batch...).Err()
		batch = batch[:0]
		return err
	}
	var err error
	for iter.Next(dctx) && err == nil {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			err = flush()
		}
	}
	if err = errors.Join(err, iter.Err(), flush()); err != nil {
		fmt.Fprintf(out, "delete keys %s: %v\n", pattern, err)
	}
}
