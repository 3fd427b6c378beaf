//go:build tools

// Package controlplane pins the Dapr control plane the Kubernetes fixture
// builds from here (internal/harness/k8s): sentry, the operator, the sidecar
// injector and placement. The scheduler is not among them: it does not
// build from the module proxy, which refuses the
// github.com/diagridio/go-etcd-cron v0.12.5 it needs (checked 2026-12-03).
package controlplane

import (
	_ "github.com/dapr/dapr/cmd/injector"
	_ "github.com/dapr/dapr/cmd/operator"
	_ "github.com/dapr/dapr/cmd/placement"
	_ "github.com/dapr/dapr/cmd/sentry"
)
