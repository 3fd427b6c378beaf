package k8s

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// coreDNS is the cluster's DNS: CoreDNS with its kubernetes plugin for the
// cluster's own names and nothing else — no forward plugin, so a name
// outside cluster.local is refused, never asked upstream.
const coreDNS = `apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
- {kind: ServiceAccount, name: coredns, namespace: kube-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
        }
        cache 30
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
      - name: coredns
        image: ` + CoreDNSImage + `
        imagePullPolicy: Never
        args: ["-conf", "/etc/coredns/Corefile"]
        ports:
        - {containerPort: 53, name: dns, protocol: UDP}
        - {containerPort: 53, name: dns-tcp, protocol: TCP}
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 2
        volumeMounts:
        - {name: config, mountPath: /etc/coredns, readOnly: true}
      volumes:
      - name: config
        configMap: {name: coredns}
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: ` + DNSService + `
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
`

// redis is the apps' Redis where deploy/'s components expect it
// (redis-master:6379, the password in Secret redis): Debian's
// redis-server, AOF with appendfsync always, its data in a folder of the
// node (StateDir/redis) that outlives the pod.
func redisManifest(password string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: redis}
stringData: {redis-password: %q}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis-master, labels: {app.kubernetes.io/name: redis}}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app.kubernetes.io/name: redis}}
  template:
    metadata: {labels: {app.kubernetes.io/name: redis}}
    spec:
      securityContext: {runAsUser: 65532, runAsGroup: 65532, runAsNonRoot: true}
      containers:
      - name: redis
        image: %s
        imagePullPolicy: Never
        args: ["--port", "6379", "--requirepass", "$(REDIS_PASSWORD)", "--dir", "/data", "--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        env:
        - name: REDIS_PASSWORD
          valueFrom: {secretKeyRef: {name: redis, key: redis-password}}
        ports:
        - {containerPort: 6379, name: redis}
        readinessProbe:
          tcpSocket: {port: 6379}
          periodSeconds: 2
        volumeMounts:
        - {name: data, mountPath: /data}
      volumes:
      - name: data
        hostPath: {path: %s, type: Directory}
---
apiVersion: v1
kind: Service
metadata: {name: redis-master}
spec:
  selector: {app.kubernetes.io/name: redis}
  ports:
  - {name: redis, port: 6379}
`, password, RedisImage, redisDataDir())
}

func redisDataDir() string { return filepath.Join(StateDir, "redis") }

// InstallAddons installs CoreDNS and Dapr's control plane (its Helm chart
// from the Dapr module, rendered offline) and waits until they run.
func (n *Node) InstallAddons(ctx context.Context) error {
	if _, err := n.Kubectl(ctx, coreDNS, "apply", "-f", "-"); err != nil {
		return err
	}
	chart, err := daprChart(ctx, n.Bin.Root)
	if err != nil {
		return err
	}
	// The daprsystem Configuration first: sentry and the operator read it at
	// start, and crash-loop for a while without it.
	manifest, err := exec.CommandContext(ctx, n.Bin.Path("helm"), "template", "dapr", chart, "--namespace", "dapr-system", "--include-crds",
		"--set", "global.registry="+DaprRegistry, "--set", "global.tag="+n.Bin.Daprd.Version,
		"--set", "global.imagePullPolicy=Never", "--set", "dapr_sidecar_injector.sidecarImagePullPolicy=Never",
		"--set", "global.scheduler.enabled=false", "--set", "dapr_placement.cluster.forceInMemoryLog=true",
		"--set", "global.prometheus.enabled=false").Output()
	if err != nil {
		return fmt.Errorf("helm template %s: %w", chart, stderrOf(err))
	}
	if _, err := n.Kubectl(ctx, "", "create", "namespace", "dapr-system"); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		return err
	}
	crds, config, rest := splitChart(string(manifest))
	if _, err := n.Kubectl(ctx, crds, "apply", "-f", "-"); err != nil {
		return err
	}
	if _, err := n.Kubectl(ctx, "", "wait", "--for=condition=Established", "--timeout=1m", "crd/configurations.dapr.io", "crd/components.dapr.io", "crd/resiliencies.dapr.io"); err != nil {
		return err
	}
	if _, err := n.Kubectl(ctx, config, "apply", "-n", "dapr-system", "-f", "-"); err != nil {
		return err
	}
	// The chart's Role and RoleBinding for reading Secrets are in the
	// default namespace; everything else in dapr-system.
	var inDefault, inDapr []string
	for doc := range strings.SplitSeq(rest, "\n---") {
		if strings.Contains(doc, "\n  namespace: default\n") {
			inDefault = append(inDefault, doc)
		} else {
			inDapr = append(inDapr, doc)
		}
	}
	if _, err := n.Kubectl(ctx, strings.Join(inDapr, "\n---"), "apply", "-n", "dapr-system", "-f", "-"); err != nil {
		return err
	}
	if _, err := n.Kubectl(ctx, strings.Join(inDefault, "\n---"), "apply", "-f", "-"); err != nil {
		return err
	}
	for _, w := range [][]string{
		{"-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=3m"},
		{"-n", "dapr-system", "rollout", "status", "deployment/dapr-sentry", "--timeout=3m"},
		{"-n", "dapr-system", "rollout", "status", "deployment/dapr-operator", "--timeout=3m"},
		{"-n", "dapr-system", "rollout", "status", "deployment/dapr-sidecar-injector", "--timeout=3m"},
		{"-n", "dapr-system", "rollout", "status", "statefulset/dapr-placement-server", "--timeout=3m"},
	} {
		fmt.Fprintf(n.log, "k8s: kubectl %s\n", strings.Join(w, " "))
		if _, err := n.Kubectl(ctx, "", w...); err != nil {
			return err
		}
	}
	return nil
}

// daprChart is the folder of Dapr's Helm chart in the Dapr module that
// tools/daprd pins (downloaded with it).
func daprChart(ctx context.Context, root string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-modfile", "go.mod", "-m", "-f", "{{.Dir}}", "github.com/dapr/dapr")
	cmd.Dir = filepath.Join(root, "tools", "daprd")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("find the Dapr module: %w", stderrOf(err))
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "charts", "dapr")
	if _, err := os.Stat(filepath.Join(dir, "Chart.yaml")); err != nil {
		return "", fmt.Errorf("no Dapr chart in the module: %w", err)
	}
	return dir, nil
}

// splitChart splits a rendered chart into its CRDs, its documents of kind
// Configuration (which need the CRDs), and the rest.
func splitChart(manifest string) (crds, config, rest string) {
	var a, b, c []string
	for doc := range strings.SplitSeq(manifest, "\n---") {
		switch {
		case strings.Contains(doc, "\nkind: CustomResourceDefinition\n"):
			a = append(a, doc)
		case strings.Contains(doc, "\nkind: Configuration\n"):
			b = append(b, doc)
		default:
			c = append(c, doc)
		}
	}
	return strings.Join(a, "\n---"), strings.Join(b, "\n---"), strings.Join(c, "\n---")
}

// Deploy applies deploy/ as it is (kubectl apply -k) in namespace ns, with
// what its README asks for first: the namespace, the Secrets and a Redis;
// it waits until every Deployment rolled out.
func (n *Node) Deploy(ctx context.Context, ns string) error {
	if _, err := n.Kubectl(ctx, "", "create", "namespace", ns); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		return err
	}
	if err := os.MkdirAll(redisDataDir(), 0o777); err != nil {
		return err
	}
	if err := os.Chmod(redisDataDir(), 0o777); err != nil { // the pod runs as 65532
		return err
	}
	for _, s := range []string{"dapr-api-token", "dapr-app-token"} {
		if _, err := n.Kubectl(ctx, "", "-n", ns, "create", "secret", "generic", s, "--from-literal=token="+randomHex(32)); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
			return err
		}
	}
	if _, err := n.Kubectl(ctx, redisManifest(randomHex(16)), "-n", ns, "apply", "-f", "-"); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		return err
	}
	if _, err := n.Kubectl(ctx, "", "-n", ns, "rollout", "status", "deployment/redis-master", "--timeout=2m"); err != nil {
		return err
	}
	if _, err := n.Kubectl(ctx, "", "-n", ns, "apply", "-k", filepath.Join(n.Bin.Root, "deploy")); err != nil {
		return err
	}
	for _, d := range []string{"subscriber", "publisher", "retention"} {
		fmt.Fprintf(n.log, "k8s: waiting for deployment/%s\n", d)
		if _, err := n.Kubectl(ctx, "", "-n", ns, "rollout", "status", "deployment/"+d, "--timeout=4m"); err != nil {
			return err
		}
	}
	return nil
}

// WaitFor polls check every half second until it returns nil, for at most
// limit.
func (n *Node) WaitFor(ctx context.Context, limit time.Duration, what string, check func() error) error {
	return n.wait(ctx, limit, what, check)
}

func stderrOf(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
	}
	return err
}
