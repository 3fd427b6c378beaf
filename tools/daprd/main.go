// Command daprd is the real Dapr sidecar, built from the Dapr Go module.
//
// It exists because the Dapr CLI and its prebuilt binaries cannot be fetched
// everywhere (see the README). It must be built with -tags stablecomponents
// (or allcomponents): without a tag Dapr's component registry panics at start.
// The launcher builds it on demand (internal/launcher/daprd.go); the version is
// pinned by this module's go.mod and stamped with -ldflags into the binary.
package main

import "github.com/dapr/dapr/cmd/daprd/app"

func main() {
	app.Run()
}
