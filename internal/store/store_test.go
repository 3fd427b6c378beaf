package store

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/store/storetest"
)

func TestMarkProcessedIsOnce(t *testing.T) {
	for _, redisStyle := range []bool{false, true} {
		t.Run(map[bool]string{false: "aborted", true: "redis"}[redisStyle], func(t *testing.T) {
			markProcessedIsOnce(t, &storetest.Mem{RedisStyle: redisStyle})
		})
	}
}

func markProcessedIsOnce(t *testing.T, mem *storetest.Mem) {
	s := New(mem, "statestore", "subscriber")
	var wg sync.WaitGroup
	firsts := make(chan bool, 20)
	for range 20 { // concurrent redeliveries of one order
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, err := s.MarkProcessed(t.Context(), order.New(5), "order-5")
			if err != nil {
				t.Error(err)
			}
			firsts <- first
		}()
	}
	wg.Wait()
	close(firsts)
	n := 0
	for f := range firsts {
		if f {
			n++
		}
	}
	if n != 1 || mem.Version(s.ProcessedKey(5)) != 1 {
		t.Fatalf("%d calls wrote the record (version %d), want exactly 1", n, mem.Version(s.ProcessedKey(5)))
	}
}

func TestMarkProcessedReportsAnUnreachableStore(t *testing.T) {
	mem := &storetest.Mem{Fail: func(string, string) error { return storetest.ErrUnavailable }}
	first, err := New(mem, "statestore", "subscriber").MarkProcessed(t.Context(), order.New(1), "e")
	if first || !errors.Is(err, storetest.ErrUnavailable) {
		t.Fatalf("MarkProcessed = %v, %v; want false and the store's error", first, err)
	}
}

func TestDeadLettersAreKeptOnceListedAndRemoved(t *testing.T) {
	for _, redisStyle := range []bool{false, true} {
		t.Run(map[bool]string{false: "aborted", true: "redis"}[redisStyle], func(t *testing.T) {
			deadLettersAreKeptOnce(t, &storetest.Mem{RedisStyle: redisStyle})
		})
	}
}

func deadLettersAreKeptOnce(t *testing.T, mem *storetest.Mem) {
	s := New(mem, "statestore", "subscriber")
	var wg sync.WaitGroup
	for i := range 10 {
		for range 2 { // each dead letter delivered twice, concurrently
			wg.Add(1)
			go func() {
				defer wg.Done()
				dl := DeadLetter{EventID: fmt.Sprintf("e%d", i), Topic: "orders", Data: []byte(`{"id":-1}`), Reason: "bad"}
				if _, err := s.AddDeadLetter(t.Context(), dl); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	list, err := s.DeadLetters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 10 {
		t.Fatalf("listed %d dead letters, want 10: %+v", len(list), list)
	}
	if err := s.RemoveDeadLetter(t.Context(), "e3"); err != nil {
		t.Fatal(err)
	}
	list, err = s.DeadLetters(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 9 {
		t.Fatalf("after removing one, listed %d, want 9", len(list))
	}
	for _, dl := range list {
		if dl.EventID == "e3" {
			t.Fatal("removed dead letter still listed")
		}
		if string(dl.Data) != `{"id":-1}` || dl.Reason != "bad" {
			t.Fatalf("dead letter changed on the way: %+v", dl)
		}
	}
}

func TestKeysAreNamespacedByApp(t *testing.T) {
	a, b := New(nil, "s", "subscriber"), New(nil, "s", "audit")
	if a.ProcessedKey(1) == b.ProcessedKey(1) {
		t.Fatal("two consumer apps share processed keys; fan-out would see each other's orders as duplicates")
	}
}
