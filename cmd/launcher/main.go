// Command launcher runs the whole system locally on real processes — Redis,
// daprd per app, the subscriber and the publisher — as `make run` does.
// The logic lives in internal/launcher, which the integration tests share.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"dapr-pub-sub/internal/launcher"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := launcher.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "launcher:", err)
		os.Exit(1)
	}
}
