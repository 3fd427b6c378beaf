// Command bench is the end-to-end benchmark: it runs every scenario against
// one dedicated redis-server and writes results.json, results.md and
// plot.svg. Run it with -h for its flags; the logic lives in internal/harness/bench.
// As `bench bare-app` it is the dapr-bare scenario's trivial subscriber.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"dapr-pub-sub/internal/harness/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	run := bench.Run
	if len(os.Args) > 1 && os.Args[1] == bench.BareAppArg { // the dapr-bare scenario's app
		run = func(ctx context.Context, _ []string, getenv func(string) string, _, _ io.Writer) error {
			return bench.BareApp(ctx, getenv)
		}
	}
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
