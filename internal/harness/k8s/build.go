package k8s

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"dapr-pub-sub/internal/harness/proc"
)

// ToolDir is where, relative to the repository root, the module that pins
// Kubernetes (and CoreDNS and Helm) lives: its go.mod is the one place the
// cluster's Kubernetes version is set.
const ToolDir = "tools/k8s"

// The commands built from ToolDir.
var k8sCommands = []string{
	"k8s.io/kubernetes/cmd/kube-apiserver",
	"k8s.io/kubernetes/cmd/kube-controller-manager",
	"k8s.io/kubernetes/cmd/kube-scheduler",
	"k8s.io/kubernetes/cmd/kubelet",
	"k8s.io/kubernetes/cmd/kube-proxy",
	"k8s.io/kubernetes/cmd/kubectl",
	"github.com/coredns/coredns",
	"helm.sh/helm/v3/cmd/helm",
}

// ControlPlaneDir is the module that builds Dapr's control plane: the
// same Dapr version as tools/daprd's go.mod (TestControlPlaneVersion).
const ControlPlaneDir = "tools/dapr-control-plane"

// The Dapr control plane. The scheduler is left out: it does not build
// from the module proxy (see tools/dapr-control-plane/tools.go).
var daprCommands = []string{
	"github.com/dapr/dapr/cmd/sentry",
	"github.com/dapr/dapr/cmd/operator",
	"github.com/dapr/dapr/cmd/injector",
	"github.com/dapr/dapr/cmd/placement",
}

// Binaries is where the built commands are, by name (kube-apiserver,
// coredns, sentry, …), with daprd and the repository they go with.
type Binaries struct {
	K8s, Dapr string // folders
	Daprd     proc.Daprd
	Root      string // the repository: the apps are built from it
}

// Path is command name's binary.
func (b Binaries) Path(name string) string {
	switch name {
	case "sentry", "operator", "injector", "placement":
		return filepath.Join(b.Dapr, name)
	}
	return filepath.Join(b.K8s, name)
}

// Build builds Kubernetes, CoreDNS, Helm and the Dapr control plane once
// per machine into the launcher's cache (each set under the hash of what
// it is built from), reporting progress to log; later calls find them.
func Build(ctx context.Context, root string, log io.Writer) (Binaries, error) {
	daprd, err := proc.FindDaprd(ctx, root, "", log)
	if err != nil {
		return Binaries{}, err
	}
	daprVersion, err := proc.RuntimeVersion(root)
	if err != nil {
		return Binaries{}, err
	}
	kv, err := k8sVersion(root)
	if err != nil {
		return Binaries{}, err
	}
	maj, rest, _ := strings.Cut(strings.TrimPrefix(kv, "v"), ".")
	minor, _, _ := strings.Cut(rest, ".")
	var kld []string
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		kld = append(kld, "-X "+pkg+".gitVersion="+kv, "-X "+pkg+".gitMajor="+maj, "-X "+pkg+".gitMinor="+minor, "-X "+pkg+".gitTreeState=clean")
	}
	k, err := buildSet(ctx, root, ToolDir, []string{"go.mod", "go.sum", "tools.go"}, "k8s-"+kv, "go.mod", k8sCommands, strings.Join(kld, " "), log)
	if err != nil {
		return Binaries{}, err
	}
	ld := "-X github.com/dapr/dapr/pkg/buildinfo.version=" + daprVersion + " -X github.com/dapr/kit/logger.DaprVersion=" + daprVersion
	d, err := buildSet(ctx, root, ControlPlaneDir, []string{"go.mod", "go.sum", "tools.go"}, "dapr-control-plane-"+daprVersion, "go.mod", daprCommands, ld, log)
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{K8s: k, Dapr: d, Daprd: daprd, Root: root}, nil
}

// k8sVersion is the k8s.io/kubernetes version ToolDir's go.mod requires.
func k8sVersion(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, ToolDir, "go.mod"))
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[len(f)-2] == "k8s.io/kubernetes" {
			return f[len(f)-1], nil
		}
	}
	return "", fmt.Errorf("%s/go.mod does not require k8s.io/kubernetes", ToolDir)
}

// buildSet builds pkgs in the module at root/dir (with modfile) into a
// folder of the cache named after name and the hash of files, pkgs and
// ldflags (proc.BuildOnce), unless it is there.
func buildSet(ctx context.Context, root, dir string, files []string, name, modfile string, pkgs []string, ldflags string, log io.Writer) (string, error) {
	complete := func(dst string) bool { _, err := os.Stat(filepath.Join(dst, ".complete")); return err == nil }
	return proc.BuildOnce(name, filepath.Join(root, dir), files, fmt.Sprint(pkgs, ldflags), complete, func(dst string) error {
		fmt.Fprintf(log, "Building %s from %s into %s (once per machine; minutes)\n", name, dir, dst)
		args := []string{"build", "-modfile", modfile, "-trimpath", "-ldflags", "-s -w " + ldflags, "-o", dst + string(filepath.Separator)}
		cmd := exec.CommandContext(ctx, "go", append(args, pkgs...)...)
		cmd.Dir = filepath.Join(root, dir)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := proc.RunWithHeartbeat(cmd, log, name+" build"); err != nil {
			return fmt.Errorf("build %s in %s: %w\n%s", name, cmd.Dir, err, out)
		}
		return os.WriteFile(filepath.Join(dst, ".complete"), nil, 0o644)
	})
}
