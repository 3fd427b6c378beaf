// Command daprd is the real Dapr sidecar, built from the Dapr Go module.
//
// It exists because the Dapr CLI and its prebuilt binaries cannot be fetched
// everywhere (see the README). It must be built with -tags stablecomponents
// (or allcomponents): without a tag Dapr's component registry panics at start.
// The launcher builds it on demand (internal/harness/launcher/daprd.go); the version is
// pinned by this module's go.mod and stamped with -ldflags into the binary.
//
// Besides the stable components it registers pubsub.jetstream, which Dapr
// lists only under allcomponents (cmd/daprd/components/pubsub_jetstream.go
// has the same two lines): the clustered-broker tests run NATS JetStream.
package main

import (
	"github.com/dapr/components-contrib/pubsub/jetstream"
	"github.com/dapr/dapr/cmd/daprd/app"
	pubsubLoader "github.com/dapr/dapr/pkg/components/pubsub"
)

func main() {
	pubsubLoader.DefaultRegistry.RegisterComponent(jetstream.NewJetStream, "jetstream")
	app.Run()
}
