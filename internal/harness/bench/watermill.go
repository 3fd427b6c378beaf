package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
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
type watermillScenario struct{}

// Name implements Scenario.
func (watermillScenario) Name() string { return "watermill" }

// Run implements Scenario.
func (watermillScenario) Run(ctx context.Context, p Params) (Result, error) {
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

	rec := NewRecorder(p.Messages)
	cctx, stop := context.WithCancel(ctx)
	msgs, err := sub.Subscribe(cctx, topic)
	if err != nil {
		stop()
		sub.Close()
		return Result{}, fmt.Errorf("watermill subscribe: %w", err)
	}
	var consumerErr error
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
	return res, errors.Join(err, consumerErr, closeErr)
}
