// Command publisher publishes order events through its Dapr sidecar.
// Run it with -h for its flags; the logic lives in internal/publisher.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"dapr-pub-sub/internal/publisher"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := publisher.Run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "publisher:", err)
		os.Exit(1)
	}
}
