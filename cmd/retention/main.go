// Command retention keeps Redis bounded beside the apps: it trims the topic
// streams, removes idle consumers, and serves the backlog as metrics. The
// logic lives in internal/retention.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"dapr-pub-sub/internal/retention"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := retention.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "retention:", err)
		os.Exit(1)
	}
}
