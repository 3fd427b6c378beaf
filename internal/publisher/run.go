package publisher

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"dapr-pub-sub/internal/logging"
	"dapr-pub-sub/internal/order"
	"dapr-pub-sub/internal/sidecar"
)

// Run is the publisher program: it parses args, connects to the sidecar and
// publishes. It returns nil when every order was published, and for
// -count -1 when ctx ends; after -h it returns flag.ErrHelp (cli.Main exits 0).
//
// Orders come from -file (stdin for "-") or are generated. Logs go to stderr
// (LOG_FORMAT and LOG_LEVEL shape them), ending with a summary: sent,
// failed, duration, rate. On a long run (-file, -count ≥ 100 or -1) with
// stderr a terminal, a progress bar shows instead of a line per order (those
// go to the debug level).
func Run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stderr io.Writer) error {
	cfg, err := ParseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := logging.New(stderr, cfg.LogFormat, cfg.LogLevel)
	var orders []order.Order
	next, total := generated(cfg), cfg.events()
	if cfg.File != "" {
		if orders, err = loadOrders(cfg.File, stdin); err != nil {
			return err
		}
		next, total = fromSlice(orders), len(orders)
	}
	p := &Publisher{Config: cfg, Log: log, Metrics: NewMetrics()}
	if cfg.MetricsAddress != "" {
		_, stop, err := ServeMetrics(cfg.MetricsAddress, p.Metrics, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	client, err := sidecar.Dial(cfg.DaprAddress, cfg.DaprAPIToken, log)
	if err != nil {
		return err
	}
	defer client.Close()
	p.Client, p.Store = client, client
	if cfg.Outbox {
		if err := p.CheckOrderStore(ctx); err != nil {
			return err
		}
	}
	if total == Forever {
		log.Info("Publishing through the Dapr sidecar until stopped", "address", cfg.DaprAddress, "rate_per_s", perSecond(cfg))
	} else {
		log.Info("Publishing through the Dapr sidecar", "address", cfg.DaprAddress, "count", total, "bulk", cfg.Bulk, "outbox", cfg.Outbox)
	}
	var bar *progress
	if wantProgress(isTerminal(stderr), cfg, total) {
		bar = newProgress(stderr, total)
		p.Progress, p.OrderLevel = bar.add, slog.LevelDebug
	}
	start := time.Now()
	sent, err := p.publish(ctx, next)
	elapsed := time.Since(start)
	bar.done()
	failed := p.failed
	if total != Forever {
		failed = total - sent // given up on, or never tried
	}
	log.Info("Summary", "sent", sent, "failed", failed, "duration", elapsed.Round(time.Millisecond).String(),
		"rate_per_s", fmt.Sprintf("%.1f", float64(sent)/max(elapsed.Seconds(), 1e-9)))
	if total == Forever && ctx.Err() != nil {
		// Stopped, as asked. The publish in flight was cancelled: its
		// error is the SDK's (gRPC Canceled), not ctx.Err(); the order
		// may or may not have reached the sidecar, and is not counted.
		return nil
	}
	return err
}

// perSecond is the configured rate, for the log: "unlimited" for none.
func perSecond(cfg Config) string {
	if pause := cfg.pause(); pause > 0 {
		return fmt.Sprintf("%.1f", float64(time.Second)/float64(pause))
	}
	return "unlimited"
}

// loadOrders returns the orders of file, stdin for "-".
func loadOrders(file string, stdin io.Reader) ([]order.Order, error) {
	r := stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	orders, err := ReadOrders(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return orders, nil
}
