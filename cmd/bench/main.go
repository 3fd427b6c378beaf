// Command bench is the end-to-end benchmark: it runs every scenario against
// one dedicated redis-server and writes results.json, results.md and
// plot.svg. Run it with -h for its flags; the logic lives in internal/harness/bench.
// As `bench bare-app` it is the dapr-bare scenario's trivial subscriber.
package main

import (
	"context"
	"io"
	"os"

	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/harness/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == bench.BareAppArg { // the dapr-bare scenario's app
		cli.Main("bench", func(ctx context.Context, _ []string, getenv func(string) string, _, _ io.Writer) error {
			return bench.BareApp(ctx, getenv)
		})
		return
	}
	cli.Main("bench", bench.Run)
}
