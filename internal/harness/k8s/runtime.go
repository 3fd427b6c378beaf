package k8s

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// containerdSock is containerd's socket: the kubelet's runtime endpoint and
// where ctr imports the images.
func containerdSock() string { return filepath.Join(RunDir, "containerd", "containerd.sock") }

// PauseImage is the pods' sandbox image: a tiny static program of ours
// that sleeps until it is stopped (cmd/k8s-pause).
const PauseImage = "dapr-pub-sub.test/pause:1"

// startContainerd starts containerd with a root, state and socket of its
// own and the CRI settings the node needs, and waits for its socket.
//
// restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, and without it
// every sandbox fails ("runc create failed: … can't get final child's PID
// from pipe: EOF").
func startContainerd(ctx context.Context) error {
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
`, filepath.Join(StateDir, "containerd"), filepath.Join(RunDir, "containerd"), containerdSock(), PauseImage, filepath.Join(StateDir, "cni"))
	path := filepath.Join(StateDir, "containerd.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return err
	}
	if err := start("containerd", "/usr/bin/containerd", "--config", path); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if run("ctr", "--address", containerdSock(), "version") == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("k8s: containerd did not answer on %s in a minute:\n%s", containerdSock(), tailFile(logFile("containerd"), 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// writeCNI writes the pods' network: a bridge inside the node's namespace
// with the pod range on it, no masquerade (ipMasq false), and routes in
// each pod to the cluster's ranges only — no default route.
func writeCNI() error {
	dir := filepath.Join(StateDir, "cni")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	conf := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "dapr-pub-sub",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "isDefaultGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "gateway": %q}]],
        "routes": [{"dst": %q}, {"dst": "%s/32"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, cniBridge, filepath.Join(StateDir, "cni-ipam"), PodCIDR, podGateway, ServiceCIDR, NodeAddr)
	return os.WriteFile(filepath.Join(dir, "10-dapr-pub-sub.conflist"), []byte(conf), 0o600)
}

// writeKubeletConfig writes the kubelet's configuration and returns its
// path: cgroupfs (this machine has cgroup v1, which 1.34 still takes with
// failCgroupV1 false), swap allowed, the cluster DNS, no image garbage
// collection (the images are imported, not pulled), and the eviction
// thresholds low enough for a test machine.
func writeKubeletConfig(ca string) (string, error) {
	resolv := filepath.Join(StateDir, "resolv.conf") // the node's upstream DNS: none
	if err := os.WriteFile(resolv, nil, 0o644); err != nil {
		return "", err
	}
	conf := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: %s
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://%s
address: %s
readOnlyPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: %s
authorization:
  mode: AlwaysAllow
clusterDNS: [%s]
clusterDomain: cluster.local
resolvConf: %s
podLogsDir: %s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  imagefs.available: 1%%
  nodefs.inodesFree: 1%%
serializeImagePulls: false
maxPods: 60
`, CgroupRoot, containerdSock(), NodeAddr, ca, DNSService, resolv, filepath.Join(StateDir, "pod-logs"))
	path := filepath.Join(StateDir, "kubelet.yaml")
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

// writeProxyConfig writes kube-proxy's configuration (iptables, inside the
// node's namespace; it leaves the conntrack table size alone).
func writeProxyConfig(kubeconfig string) (string, error) {
	conf := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
bindAddress: %s
clusterCIDR: %s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack:
  maxPerCore: 0
`, kubeconfig, NodeName, NodeAddr, PodCIDR)
	path := filepath.Join(StateDir, "kube-proxy.yaml")
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

// saveSysctls records the kernel settings the kubelet changes.
func saveSysctls() error {
	var b strings.Builder
	for _, k := range globalSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s=%s\n", k, strings.TrimSpace(string(v)))
	}
	return os.WriteFile(filepath.Join(StateDir, "sysctls"), []byte(b.String()), 0o600)
}

// restoreSysctls puts back what saveSysctls recorded.
func restoreSysctls() {
	b, err := os.ReadFile(filepath.Join(StateDir, "sysctls"))
	if err != nil {
		return
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			_ = os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644)
		}
	}
}
