package k8s

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"dapr-pub-sub/internal/harness/proc"
)

// Run is the k8s command: up, down, run or build. It takes the arguments,
// environment and output of a command, as every command's Run does; all
// of its output goes to stdout, errors are returned.
func Run(ctx context.Context, args []string, _ func(string) string, stdout, _ io.Writer) error {
	out := stdout
	if len(args) != 1 {
		return errors.New("usage: k8s up|down|run|build")
	}
	if args[0] == "down" {
		Down(out)
		fmt.Fprintln(out, "k8s: down; everything it changed is put back")
		return nil
	}
	root, err := proc.RepoRoot()
	if err != nil {
		return err
	}
	bin, err := Build(ctx, root, out)
	if err != nil {
		return err
	}
	switch args[0] {
	case "build":
		return nil
	case "run":
		return runFlow(ctx, bin, out)
	case "up":
		start := time.Now()
		n, err := Up(ctx, bin, out)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "k8s: node %s Ready in %s\n", NodeName, time.Since(start).Round(time.Second))
		if err := n.InstallAddons(ctx); err != nil {
			Down(out)
			return err
		}
		fmt.Fprintf(out, "k8s: CoreDNS and Dapr's control plane run, %s after the start\n  kubectl --kubeconfig %s get pods -A\n", time.Since(start).Round(time.Second), n.Kubeconfig)
		return nil
	}
	return fmt.Errorf("unknown command %q: up, down, run or build", args[0])
}

// DemoNamespace is where `k8s run` deploys the system.
const DemoNamespace = "demo"

// runFlow is `k8s run`: the cluster (brought up unless it is), deploy/
// applied as the README's "Deploy on Kubernetes" says, and the
// subscriber's "Received message" lines, read with the README's own
// command, until 10 have come (or Ctrl-C).
func runFlow(ctx context.Context, bin Binaries, out io.Writer) error {
	n, err := Attach(bin, out)
	if err != nil {
		if n, err = Up(ctx, bin, out); err != nil {
			return err
		}
		if err := n.InstallAddons(ctx); err != nil {
			Down(out)
			return err
		}
	}
	if err := n.Deploy(ctx, DemoNamespace); err != nil {
		return fmt.Errorf("%w\n(the cluster stays up to look into it: kubectl --kubeconfig %s -n %s get pods; make k8s-down removes it)", err, n.Kubeconfig, DemoNamespace)
	}
	pods, err := n.Kubectl(ctx, "", "-n", DemoNamespace, "get", "pods")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s\nk8s: kubectl -n %s logs deploy/subscriber -c subscriber -f | grep 'Received message'\n", pods, DemoNamespace)
	cmd := exec.CommandContext(ctx, bin.Path("kubectl"), "--kubeconfig", n.Kubeconfig, "-n", DemoNamespace, "logs", "deploy/subscriber", "-c", "subscriber", "-f")
	r, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(r)
	for seen := 0; seen < 10 && sc.Scan(); {
		if strings.Contains(sc.Text(), "Received message") {
			fmt.Fprintln(out, sc.Text())
			seen++
		}
	}
	fmt.Fprintf(out, "k8s: the cluster stays up: kubectl --kubeconfig %s -n %s get pods; make k8s-down removes it\n", n.Kubeconfig, DemoNamespace)
	return sc.Err()
}
