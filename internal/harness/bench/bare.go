package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"dapr-pub-sub/internal/subscriber"
)

// BareAppArg is the argument that makes cmd/bench the dapr-bare scenario's
// subscriber app (BareApp) instead of the benchmark.
const BareAppArg = "bare-app"

// bareDeliveries is BareApp's GET /deliveries: every order id it acked,
// with when it first arrived, and how many arrived again.
type bareDeliveries struct {
	IDs  []int64 `json:"ids"`
	At   []int64 `json:"at_unix_nano"`
	Dups int     `json:"dups"`
}

// BareApp is the trivial app of the dapr-bare scenario: Dapr's floor. It
// subscribes to orders with bulk subscribe (BULK_MAX_MESSAGES,
// BULK_MAX_AWAIT), decodes each entry's payload for its id, notes when it
// arrived and answers SUCCESS — no state, no dedupe, no effect. It serves
// /healthz, /stats ({"processed": distinct ids}) and /deliveries on
// APP_PORT until ctx ends.
func BareApp(ctx context.Context, getenv func(string) string) error {
	cfg, err := subscriber.ParseConfig(nil, getenv, io.Discard) // the settings the subscriber would get
	if err != nil {
		return err
	}
	port, batch, await := cfg.Port, cfg.Bulk.MaxMessages, cfg.Bulk.MaxAwait
	var (
		mu   sync.Mutex
		seen = map[int64]bool{}
		got  bareDeliveries
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {})
	mux.HandleFunc("GET /dapr/subscribe", func(w http.ResponseWriter, _ *http.Request) {
		sub := map[string]any{"pubsubname": "pubsub", "topic": "orders", "route": "/orders"}
		if batch > 0 {
			sub["route"] = "/orders-bulk"
			sub["bulkSubscribe"] = map[string]any{"enabled": true, "maxMessagesCount": batch, "maxAwaitDurationMs": await.Milliseconds()}
		}
		_ = json.NewEncoder(w).Encode([]any{sub})
	})
	note := func(data json.RawMessage) error {
		id, err := DecodePayload(data)
		if err != nil {
			return err
		}
		now := time.Now().UnixNano()
		mu.Lock()
		defer mu.Unlock()
		if seen[id] {
			got.Dups++
			return nil
		}
		seen[id] = true
		got.IDs, got.At = append(got.IDs, id), append(got.At, now)
		return nil
	}
	type event struct {
		Data json.RawMessage `json:"data"`
	}
	mux.HandleFunc("POST /orders-bulk", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Entries []struct {
				EntryID string `json:"entryId"`
				Event   event  `json:"event"`
			} `json:"entries"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		type status struct {
			EntryID string `json:"entryId"`
			Status  string `json:"status"`
		}
		out := make([]status, len(req.Entries))
		for i, e := range req.Entries {
			out[i] = status{e.EntryID, "SUCCESS"}
			if note(e.Event.Data) != nil {
				out[i].Status = "DROP"
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"statuses": out})
	})
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		var e event
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil || note(e.Data) != nil {
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "DROP"})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"status": "SUCCESS"})
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]int{"processed": len(got.IDs)})
	})
	mux.HandleFunc("GET /deliveries", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(&got)
	})
	lis, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// collectBare waits like collect, then hands the Recorder what the bare
// app at port noted.
func collectBare(ctx context.Context, port int, token string, rec *Recorder, p Params) error {
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if err := waitProcessed(ctx, p, rec, func(ctx context.Context) (int64, error) { return appStats(ctx, base, token) }); err != nil {
		return err
	}
	var got bareDeliveries
	if err := getJSON(ctx, base+"/deliveries", token, &got); err != nil {
		return fmt.Errorf("bare app /deliveries: %w", err)
	}
	for i, id := range got.IDs {
		rec.Deliver(id, time.Unix(0, got.At[i]))
	}
	for range got.Dups {
		rec.Deliver(got.IDs[0], time.Now()) // counted as duplicates; which id does not matter
	}
	return nil
}

// getJSON GETs url with the app token and decodes its JSON into v.
func getJSON(ctx context.Context, url, token string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("dapr-api-token", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s %s", url, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
