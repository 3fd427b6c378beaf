package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// watermillScenario is what a Go developer would write with Watermill and
// its Redis Streams backend: Publish one message per call; a subscriber in
// a consumer group that handles and Acks each message.
//
// With dedupe it is the same developer who wants each message's effect
// once, as the Dapr scenarios' records give it: before the Ack, the
// handler writes the message's id with SET NX EX (insert if absent, with
// the records' TTL) to the same Redis, and a message whose id is already
// there is a redelivery, acknowledged without its effect. Watermill's own
// Deduplicator middleware keeps its keys in memory, which a restart loses,
// so a durable store is the fair peer. One SET per message, not one per
// batch: Watermill's subscriber hands a consumer one message at a time and
// waits for its Ack before the next, so there is no batch to pipeline
// without leaving the library's handler model.
type watermillScenario struct{ dedupe bool }

// dedupeTTL is how long watermill-dedupe keeps an id: the subscriber's
// record TTL (its retention window's default).
const dedupeTTL = 24 * time.Hour

// Name implements Scenario.
func (s watermillScenario) Name() string {
	if s.dedupe {
		return "watermill-dedupe"
	}
	return "watermill"
}

// Run implements Scenario.
func (s watermillScenario) Run(ctx context.Context, p Params) (Result, error) {
	topic := "bench:" + p.RunID
	pubClient := redis.NewClient(&redis.Options{Addr: p.Redis.Addr, Password: p.Redis.Password, PoolSize: p.Senders + 2})
	defer pubClient.Close()
	// The subscriber closes its client in Close.
	subClient := redis.NewClient(&redis.Options{Addr: p.Redis.Addr, Password: p.Redis.Password})
	// Library defaults throughout, except:
	//  - DisableIndefiniteInitialBlock: the first XREADGROUP blocks for
	//    BlockTime (100 ms) instead of forever, so that Close returns;
	//    later reads block for BlockTime anyway.
	//  - no logger (NopLogger, as when none is given).
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: pubClient}, nil)
	if err != nil {
		return Result{}, fmt.Errorf("watermill publisher: %w", err)
	}
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:                        subClient,
		ConsumerGroup:                 "bench",
		DisableIndefiniteInitialBlock: true,
	}, nil)
	if err != nil {
		subClient.Close()
		return Result{}, fmt.Errorf("watermill subscriber: %w", err)
	}
	defer deleteStream(ctx, pubClient, topic, p.Out)
	// The dedupe store: the same Redis, a client of its own.
	keys := "bench:dedupe:" + p.RunID + ":"
	store := redis.NewClient(&redis.Options{Addr: p.Redis.Addr, Password: p.Redis.Password})
	defer store.Close()
	if s.dedupe {
		defer deleteKeys(ctx, store, keys+"*", p.Out)
	}

	rec := NewRecorder(p.Messages)
	cctx, stop := context.WithCancel(ctx)
	msgs, err := sub.Subscribe(cctx, topic)
	if err != nil {
		stop()
		sub.Close()
		return Result{}, fmt.Errorf("watermill subscribe: %w", err)
	}
	var consumerErr error
	absorbed := 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for msg := range msgs {
			id, err := DecodePayload(msg.Payload)
			if err != nil {
				consumerErr = err
				msg.Nack()
				stop()
				continue
			}
			if s.dedupe {
				first, err := store.SetNX(cctx, keys+strconv.FormatInt(id, 10), 1, dedupeTTL).Result()
				if err != nil {
					consumerErr = fmt.Errorf("dedupe message %d: %w", id, err)
					msg.Nack()
					stop()
					continue
				}
				if !first {
					absorbed++ // a redelivery: acknowledged, no second effect
					msg.Ack()
					continue
				}
			}
			rec.Deliver(id, time.Now())
			msg.Ack()
		}
	}()

	res, err := Measure(ctx, p, Measurement{
		Recorder:  rec,
		Processes: map[string]int{RedisCPU: p.Redis.Pid, SelfCPU: os.Getpid()},
		Send: func(ctx context.Context, batch []Outgoing) error {
			m := batch[0]
			return pub.Publish(topic, message.NewMessage(watermill.NewUUID(), Payload(m.ID, p.Size, m.Stamp)))
		},
	})
	stop()
	closeErr := sub.Close()
	wg.Wait()
	res.PayloadBytes = len(Payload(int64(p.Messages-1), p.Size, time.Now()))
	res.Absorbed = absorbed
	return res, errors.Join(err, consumerErr, closeErr)
}
