// Command recordstore is a Dapr pluggable state store for the subscriber's
// processed-order records, served on a Unix socket beside daprd. The logic
// lives in internal/recordstore.
package main

import (
	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/recordstore"
)

func main() { cli.Main("recordstore", recordstore.Run) }
