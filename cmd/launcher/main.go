// Command launcher runs the whole system locally on real processes — Redis,
// daprd per app, the subscriber and the publisher — as `make run` does.
// The logic lives in internal/harness/system, which the integration tests and the
// benchmark share.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"dapr-pub-sub/internal/harness/system"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := system.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		os.Exit(1)
	}
}
