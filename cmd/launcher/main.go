// Command launcher runs the whole system locally on real processes — Redis,
// daprd per app, the subscriber and the publisher — as `make run` does.
// The logic lives in internal/harness/launcher, which starts the system through
// internal/harness/system, as the integration tests and the benchmark do.
package main

import (
	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/harness/launcher"
)

func main() { cli.Main("launcher", launcher.Run) }
