// Command daprd is the real Dapr sidecar, built from the Dapr Go module.
//
// It exists because the Dapr CLI and its prebuilt binaries cannot be fetched
// everywhere (see the README). It must be built with -tags stablecomponents
// (or allcomponents): without a tag Dapr's component registry panics at start.
// The launcher builds it on demand (internal/harness/launcher/daprd.go); the version is
// pinned by this module's go.mod and stamped with -ldflags into the binary.
//
// Two pub/sub components are registered over Dapr's own, each a copy of
// components-contrib's with one fix for a Dapr defect that loses messages
// when a subscriber's daprd crashes (docs/brokers.md, "Through a sidecar
// crash"):
//   - pubsub.jetstream (./jetstream): acknowledges after the app answers,
//     not before. Dapr lists JetStream only under allcomponents; the
//     clustered-broker tests run it.
//   - pubsub.mqtt3 (./mqtt3): a resumed session's messages that arrive
//     before the subscription wait for it instead of blocking the client.
//
// main runs after every package's init, so these registrations replace
// the stable components' of the same names.
package main

import (
	"github.com/dapr/dapr/cmd/daprd/app"
	pubsubLoader "github.com/dapr/dapr/pkg/components/pubsub"

	"dapr-pub-sub/tools/daprd/jetstream"
	mqtt "dapr-pub-sub/tools/daprd/mqtt3"
)

func main() {
	pubsubLoader.DefaultRegistry.RegisterComponent(jetstream.NewJetStream, "jetstream")
	pubsubLoader.DefaultRegistry.RegisterComponent(mqtt.NewMQTTPubSub, "mqtt3", "mqtt")
	app.Run()
}
