// Command launcher runs the whole system locally on real processes — Redis,
// daprd per app, the subscriber and the publisher — as `make run` does.
// The logic lives in internal/harness/launcher, which starts the system through
// internal/harness/system, as the integration tests and the benchmark do.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"dapr-pub-sub/internal/harness/launcher"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := launcher.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		os.Exit(1)
	}
}
