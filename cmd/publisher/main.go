// Command publisher publishes order events through its Dapr sidecar.
// Run it with -h for its flags; the logic lives in internal/publisher.
package main

import (
	"context"
	"io"
	"os"

	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/publisher"
)

func main() {
	cli.Main("publisher", func(ctx context.Context, args []string, getenv func(string) string, _, stderr io.Writer) error {
		return publisher.Run(ctx, args, getenv, os.Stdin, stderr) // it reads orders from stdin (-file -)
	})
}
