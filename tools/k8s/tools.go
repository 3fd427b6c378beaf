//go:build tools

// Package k8s pins the commands the Kubernetes fixture (internal/harness/k8s)
// builds from here: Kubernetes's own, CoreDNS (the cluster's DNS) and Helm
// (renders Dapr's chart).
package k8s

import (
	_ "github.com/coredns/coredns"
	_ "helm.sh/helm/v3/cmd/helm"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
