// Command k8s runs the Kubernetes fixture: `k8s up` brings a one-node
// cluster with Dapr's control plane up on this machine (root), `k8s run`
// applies deploy/ and shows the original example's flow, `k8s down` removes it all.
// The logic lives in internal/harness/k8s.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"dapr-pub-sub/internal/harness/k8s"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := k8s.Run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "k8s:", err)
		os.Exit(1)
	}
}
