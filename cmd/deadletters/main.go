// Command deadletters lists the dead letters the subscriber kept and
// replays them to their topic. The logic lives in internal/deadletters.
package main

import (
	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/deadletters"
)

func main() { cli.Main("deadletters", deadletters.Run) }
