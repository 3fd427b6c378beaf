// Command subscriber is the order subscriber that Dapr calls with each event.
// Run it with -h for its flags; the program is internal/subscriber, its parts the packages below it.
package main

import (
	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/subscriber"
)

func main() { cli.Main("subscriber", subscriber.Run) }
