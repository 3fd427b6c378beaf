// Command recordstore is a Dapr pluggable state store for the subscriber's
// processed-order records, served on a Unix socket beside daprd. The logic
// lives in internal/recordstore.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"dapr-pub-sub/internal/recordstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := recordstore.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "recordstore:", err)
		os.Exit(1)
	}
}
