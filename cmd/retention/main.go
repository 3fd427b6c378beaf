// Command retention keeps Redis bounded beside the apps: it trims the topic
// streams, removes idle consumers, and serves the backlog as metrics. The
// logic lives in internal/retention.
package main

import (
	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/retention"
)

func main() { cli.Main("retention", retention.Run) }
