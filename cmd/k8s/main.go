// Command k8s runs the Kubernetes fixture: `k8s up` brings a one-node
// cluster with Dapr's control plane up on this machine (root), `k8s run`
// applies deploy/ and shows the original example's flow, `k8s down` removes it all.
// The logic lives in internal/harness/k8s.
package main

import (
	"dapr-pub-sub/internal/cli"
	"dapr-pub-sub/internal/harness/k8s"
)

func main() { cli.Main("k8s", k8s.Run) }
