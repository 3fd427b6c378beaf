// Package k8s runs a real one-node Kubernetes on this machine, for the
// shipped manifests (deploy/) and the in-cluster scenarios: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, containerd,
// the kubelet and kube-proxy, CoreDNS, Dapr's control plane from its Helm
// chart, and images built from this machine's files (no Docker, no
// registry).
//
// The whole node lives in a network namespace of its own (NodeNS), tied to
// the root namespace by one veth pair with two addresses of TEST-NET-3
// (NodeAddr and HostAddr). Pods, services, the bridge, kube-proxy's
// iptables rules and the CNI's routes are all inside it, and it has no
// route but to its own ranges and to HostAddr: nothing in it can reach
// anything else, and nothing but the fixture reaches it. Only what the
// kubelet changes outside a network namespace (a few kernel sysctls,
// cgroups under CgroupRoot, mounts under its folders) is restored by Down.
//
// There is one cluster per machine: the kubelet and the CNI plugins keep
// state at fixed paths (/run/netns, /var/lib/cni).
package k8s

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The node's network, all of it its own: TEST-NET-3 (RFC 5737) for the
// link between the root namespace and the node, private ranges for pods
// and services, which exist only inside the node's namespace.
const (
	NodeNS      = "dps-k8s"
	hostLink    = "dps-k8s0"
	HostAddr    = "203.0.113.1"
	NodeAddr    = "203.0.113.2"
	linkPrefix  = 30
	PodCIDR     = "10.244.0.0/24"
	podGateway  = "10.244.0.1"
	ServiceCIDR = "10.96.0.0/24"
	apiService  = "10.96.0.1"
	DNSService  = "10.96.0.10"
	NodeName    = "node1"
	APIPort     = 6443
	CgroupRoot  = "/dapr-pub-sub-k8s"
	cniBridge   = "cni0"
)

// StateDir holds everything the cluster writes (certificates, etcd,
// containerd, the kubelet, logs, the processes' pids); RunDir the
// sockets and runtime state.
var (
	StateDir = "/var/lib/dapr-pub-sub-k8s"
	RunDir   = "/run/dapr-pub-sub-k8s"
)

// The kernel settings the kubelet changes outside the node's network
// namespace; Up records them and Down puts them back.
var globalSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// fixedPaths are where the kubelet, containerd's shims or the CNI plugins
// may write whatever they are told; Up records which do not exist yet and
// Down removes those.
var fixedPaths = []string{"/var/lib/cni", "/var/lib/kubelet", "/run/containerd", "/var/log/pods", "/var/log/containers", "/etc/cni", "/opt/cni"}

// The node's processes in the order they start (Down stops them in
// reverse).
var processes = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy"}

// Node is a running one-node cluster.
type Node struct {
	Bin        Binaries
	Kubeconfig string // admin, for kubectl from this machine (root namespace)
	log        io.Writer
}

// Kubectl runs kubectl against the cluster with args and stdin, and
// returns its standard output; an error carries its standard error.
func (n *Node) Kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, n.Bin.Path("kubectl"), append([]string{"--kubeconfig", n.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Up starts the node: it checks what it needs, sets up the namespace and
// the certificates, starts the processes (detached: they outlive this
// process until Down) and returns once the node is Ready. On failure it
// tears down what it started.
func Up(ctx context.Context, bin Binaries, log io.Writer) (n *Node, err error) {
	if err := checkHost(); err != nil {
		return nil, err
	}
	if running() {
		return nil, fmt.Errorf("a cluster is already up (%s exists): make k8s-down first", filepath.Join(StateDir, "pids"))
	}
	Down(log) // what a crashed run left
	n = &Node{Bin: bin, log: log}
	defer func() {
		if err != nil {
			fmt.Fprintf(log, "k8s: bringing the node up failed: %v\n", err)
			for _, p := range processes {
				if _, err := os.Stat(logFile(p)); err == nil {
					fmt.Fprintf(log, "--- the end of %s's log:\n%s\n", p, tailFile(logFile(p), 15))
				}
			}
			Down(log)
		}
	}()
	for _, d := range []string{StateDir, RunDir, filepath.Join(StateDir, "pids"), filepath.Join(StateDir, "logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return n, err
		}
	}
	if err := saveSysctls(); err != nil {
		return n, err
	}
	var absent []string
	for _, p := range fixedPaths {
		if _, err := os.Stat(p); err != nil {
			absent = append(absent, p)
		}
	}
	if err := os.WriteFile(filepath.Join(StateDir, "absent-paths"), []byte(strings.Join(absent, "\n")), 0o600); err != nil {
		return n, err
	}
	if err := makeNetwork(); err != nil {
		return n, err
	}
	p, err := newPKI(filepath.Join(StateDir, "pki"), []net.IP{net.ParseIP(NodeAddr), net.ParseIP(apiService), net.ParseIP("127.0.0.1")},
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"})
	if err != nil {
		return n, err
	}
	server := fmt.Sprintf("https://%s:%d", NodeAddr, APIPort)
	if n.Kubeconfig, err = p.kubeconfig("admin", server); err != nil {
		return n, err
	}
	pk := func(f string) string { return filepath.Join(p.dir, f) }

	if err := start("etcd", "/usr/bin/etcd", "--name", "node1", "--data-dir", filepath.Join(StateDir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "node1=http://127.0.0.1:2380", "--listen-metrics-urls", "http://127.0.0.1:2381"); err != nil {
		return n, err
	}
	if err := start("kube-apiserver", bin.Path("kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:2379",
		"--advertise-address", NodeAddr, "--bind-address", "0.0.0.0", "--secure-port", strconv.Itoa(APIPort),
		"--service-cluster-ip-range", ServiceCIDR,
		"--client-ca-file", pk(caCrt), "--tls-cert-file", pk(apiserverCrt), "--tls-private-key-file", pk(apiserverKey),
		"--kubelet-client-certificate", pk(adminCrt), "--kubelet-client-key", pk(adminKey),
		"--kubelet-preferred-address-types", "InternalIP", // not the node's name: no DNS outside the cluster
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pk(saPub), "--service-account-signing-key-file", pk(saKey),
		"--authorization-mode", "RBAC", "--allow-privileged=true",
		"--profiling=false", "--v", "1"); err != nil {
		return n, err
	}
	if err := n.wait(ctx, 2*time.Minute, "the API server", func() error {
		_, err := n.Kubectl(ctx, "", "get", "--raw", "/readyz")
		return err
	}); err != nil {
		return n, err
	}
	cm, err := p.kubeconfig("components", server)
	if err != nil {
		return n, err
	}
	if err := start("kube-controller-manager", bin.Path("kube-controller-manager"),
		"--kubeconfig", cm, "--authentication-kubeconfig", cm, "--authorization-kubeconfig", cm,
		"--service-account-private-key-file", pk(saKey), "--root-ca-file", pk(caCrt),
		"--use-service-account-credentials=false", "--leader-elect=false",
		"--bind-address", "127.0.0.1", "--controllers", "*,-nodeipam,-cloud-node-lifecycle", "--v", "1"); err != nil {
		return n, err
	}
	if err := start("kube-scheduler", bin.Path("kube-scheduler"),
		"--kubeconfig", cm, "--authentication-kubeconfig", cm, "--authorization-kubeconfig", cm,
		"--leader-elect=false", "--bind-address", "127.0.0.1", "--v", "1"); err != nil {
		return n, err
	}
	if err := startContainerd(ctx); err != nil {
		return n, err
	}
	if err := n.importImages(ctx); err != nil {
		return n, err
	}
	if err := writeCNI(); err != nil {
		return n, err
	}
	if err := makeCgroupRoot(); err != nil {
		return n, err
	}
	kcfg, err := writeKubeletConfig(pk(caCrt))
	if err != nil {
		return n, err
	}
	if err := start("kubelet", bin.Path("kubelet"), "--config", kcfg, "--kubeconfig", cm,
		"--hostname-override", NodeName, "--node-ip", NodeAddr, "--root-dir", filepath.Join(StateDir, "kubelet"), "--v", "1"); err != nil {
		return n, err
	}
	pcfg, err := writeProxyConfig(cm)
	if err != nil {
		return n, err
	}
	if err := start("kube-proxy", bin.Path("kube-proxy"), "--config", pcfg, "--v", "1"); err != nil {
		return n, err
	}
	if err := n.wait(ctx, 2*time.Minute, "node "+NodeName+" Ready", func() error {
		out, err := n.Kubectl(ctx, "", "get", "node", NodeName, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err == nil && out != "True" {
			err = fmt.Errorf("Ready=%q", out)
		}
		return err
	}); err != nil {
		return n, err
	}
	return n, nil
}

// Attach returns the cluster that is up (after Up in another process).
func Attach(bin Binaries, log io.Writer) (*Node, error) {
	if !running() {
		return nil, errors.New("no cluster is up: make k8s-up")
	}
	return &Node{Bin: bin, Kubeconfig: filepath.Join(StateDir, "pki", "admin.kubeconfig"), log: log}, nil
}

// checkHost says what this machine lacks to run the node.
func checkHost() error {
	if os.Geteuid() != 0 {
		return errors.New("k8s: the node needs root (network namespaces, cgroups, mounts)")
	}
	var missing []string
	for bin, pkg := range map[string]string{
		"/usr/bin/etcd": "etcd-server", "/usr/bin/containerd": "containerd", "/usr/bin/ctr": "containerd",
		"/usr/sbin/runc": "runc", "/usr/lib/cni/bridge": "containernetworking-plugins",
		"/usr/sbin/iptables": "iptables", "/usr/sbin/conntrack": "conntrack", "/usr/bin/nsenter": "util-linux",
		"/usr/bin/redis-server": "redis-server",
	} {
		if _, err := os.Stat(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("k8s: missing %s: apt-get install -y %s", strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	return nil
}

// makeNetwork makes the node's namespace and its link to this one.
func makeNetwork() error {
	ns := func(args ...string) []string { return append([]string{"ip", "-n", NodeNS}, args...) }
	for _, args := range [][]string{
		{"ip", "netns", "add", NodeNS},
		{"ip", "link", "add", hostLink, "type", "veth", "peer", "name", "eth0", "netns", NodeNS},
		{"ip", "addr", "add", HostAddr + "/" + strconv.Itoa(linkPrefix), "dev", hostLink},
		{"ip", "link", "set", hostLink, "up"},
		ns("link", "set", "lo", "up"),
		ns("addr", "add", NodeAddr+"/"+strconv.Itoa(linkPrefix), "dev", "eth0"),
		ns("link", "set", "eth0", "up"),
		// The pods' bridge, made here rather than by the CNI plugin (which
		// takes it as it finds it): a process of the node must find a route
		// to a service address before kube-proxy's rules rewrite it to a
		// pod's, and the bridge is where that route goes — what no rule
		// rewrites goes nowhere (no one answers for it there).
		ns("link", "add", cniBridge, "type", "bridge"),
		ns("addr", "add", podGateway+"/24", "dev", cniBridge),
		ns("link", "set", cniBridge, "up"),
		ns("route", "add", ServiceCIDR, "dev", cniBridge),
		{"ip", "netns", "exec", NodeNS, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	} {
		if err := run(args...); err != nil {
			return err
		}
	}
	// Service traffic between pods on the bridge goes through iptables.
	if err := run("ip", "netns", "exec", NodeNS, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"); err != nil {
		if err := run("modprobe", "br_netfilter"); err != nil {
			return fmt.Errorf("k8s: bridged traffic must pass iptables (br_netfilter): %w", err)
		}
		return run("ip", "netns", "exec", NodeNS, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
	}
	return nil
}

// start starts a node process inside the node's namespace, detached (its
// own session; it outlives this process), its output in its log file.
func start(name, path string, args ...string) error {
	lf, err := os.OpenFile(logFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd := exec.Command("/usr/bin/nsenter", append([]string{"--net=/run/netns/" + NodeNS, "--", path}, args...)...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return os.WriteFile(filepath.Join(StateDir, "pids", name), []byte(strconv.Itoa(pid)), 0o600)
}

func logFile(name string) string { return filepath.Join(StateDir, "logs", name+".log") }

// exited names a node process that was started and no longer runs.
func exited() string {
	for _, p := range processes {
		b, err := os.ReadFile(filepath.Join(StateDir, "pids", p))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(string(b)); err == nil && !alive(pid) {
			return p
		}
	}
	return ""
}

// running reports whether a cluster's processes are recorded.
func running() bool {
	entries, err := os.ReadDir(filepath.Join(StateDir, "pids"))
	return err == nil && len(entries) > 0
}

// wait polls check every half second until it returns nil.
func (n *Node) wait(ctx context.Context, limit time.Duration, what string, check func() error) error {
	fmt.Fprintf(n.log, "k8s: waiting for %s\n", what)
	deadline := time.Now().Add(limit)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if dead := exited(); dead != "" {
			return fmt.Errorf("k8s: %s exited while waiting for %s:\n%s", dead, what, tailFile(logFile(dead), 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("k8s: no %s after %s: %w", what, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
