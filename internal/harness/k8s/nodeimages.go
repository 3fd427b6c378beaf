package k8s

import (
	"context"
	"dapr-pub-sub/internal/appenv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Image names. The apps' are those deploy/ names (kustomization.yaml tags
// them :dev); Dapr's are the chart's {registry}/{name}:{tag} with
// DaprRegistry; the rest are the fixture's own. The .test domain (RFC
// 2606) is no registry: every pod runs what was imported, nothing is
// pulled.
const (
	DaprRegistry = "dapr-pub-sub.test/dapr"
	CoreDNSImage = "dapr-pub-sub.test/coredns:1"
	RedisImage   = "dapr-pub-sub.test/redis:1"
	appTag       = "dev"
)

// Apps are the commands of this repository that deploy/ runs, each as
// image dapr-pub-sub-<name>:dev with the entrypoint /app (as the
// Dockerfile builds them).
var Apps = []string{"publisher", "subscriber", "retention", "deadletters"}

// importImages builds the images from this machine's files and imports
// them into containerd: the sandbox, the apps (built static, as the
// Dockerfile does), daprd and Dapr's control plane, CoreDNS, and Redis from
// Debian's redis-server and redis-cli with the libraries they load.
func (n *Node) importImages(ctx context.Context) error {
	build := filepath.Join(StateDir, "build")
	if err := os.MkdirAll(build, 0o755); err != nil {
		return err
	}
	root, daprd := n.Bin.Root, n.Bin.Daprd
	pkgs := []string{"./internal/harness/k8s/pause"}
	for _, a := range Apps {
		pkgs = append(pkgs, "./cmd/"+a)
	}
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-trimpath", "-ldflags", "-s -w", "-o", build + "/"}, pkgs...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the apps: %w\n%s", err, out)
	}
	images := []image{
		{Refs: []string{PauseImage}, Files: map[string]string{"/pause": filepath.Join(build, "pause")}, Entrypoint: []string{"/pause"}},
		{Refs: []string{CoreDNSImage}, Files: map[string]string{"/coredns": n.Bin.Path("coredns")}, Entrypoint: []string{"/coredns"}},
	}
	for _, a := range Apps { // as the Dockerfile builds them
		images = append(images, image{Refs: []string{"dapr-pub-sub-" + a + ":" + appTag}, Files: map[string]string{"/app": filepath.Join(build, a)},
			Entrypoint: []string{"/app"}, Env: []string{appenv.Set(appenv.AppAddress, "0.0.0.0")}, User: "65532:65532"})
	}
	dapr := image{Files: map[string]string{"/daprd": daprd.Path}, User: "65532:65532"}
	dapr.Refs = append(dapr.Refs, DaprRegistry+"/daprd:"+daprd.Version)
	for _, c := range []string{"sentry", "operator", "injector", "placement"} {
		dapr.Files["/"+c] = n.Bin.Path(c)
		dapr.Refs = append(dapr.Refs, DaprRegistry+"/"+c+":"+daprd.Version)
	}
	images = append(images, dapr)
	redisFiles, err := withLibraries(map[string]string{"/usr/bin/redis-server": "/usr/bin/redis-server", "/usr/bin/redis-cli": "/usr/bin/redis-cli"})
	if err != nil {
		return err
	}
	images = append(images, image{Refs: []string{RedisImage}, Files: redisFiles, Entrypoint: []string{"/usr/bin/redis-server"}, Dirs: []string{"/data"}})
	tar := filepath.Join(build, "images.tar")
	if err := writeTarball(tar, images); err != nil {
		return err
	}
	fmt.Fprintf(n.log, "k8s: importing %d images into containerd\n", len(images))
	return importImages(ctx, containerdSock(), tar)
}
