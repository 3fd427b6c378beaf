package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// DaprdToolDir is where, relative to the repository root, the small Go
// module that builds daprd lives. Its go.mod pins the default Dapr runtime
// version: the one place to change it. Every other version it can build has
// a go.<version>.mod (and .sum) beside it.
const DaprdToolDir = "tools/daprd"

// RepoRoot finds the repository root by walking up from the working
// directory to the folder that holds DaprdToolDir.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, DaprdToolDir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s/go.mod above the working directory: run from inside the dapr-pub-sub checkout", DaprdToolDir)
		}
		dir = parent
	}
}

// RuntimeVersion reads the default Dapr runtime version (e.g. "1.18.0")
// that root/tools/daprd/go.mod requires.
func RuntimeVersion(root string) (string, error) {
	return requiredDapr(filepath.Join(root, DaprdToolDir, "go.mod"))
}

// RuntimeVersions lists every Dapr runtime version the project can build,
// the default first.
func RuntimeVersions(root string) ([]string, error) {
	def, err := RuntimeVersion(root)
	if err != nil {
		return nil, err
	}
	others, err := filepath.Glob(filepath.Join(root, DaprdToolDir, "go.*.mod"))
	if err != nil {
		return nil, err
	}
	versions := []string{def}
	for _, f := range others {
		v := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "go."), ".mod")
		if v != def {
			versions = append(versions, v)
		}
	}
	return versions, nil
}

// modFile is the go.mod that builds version, relative to the tool folder:
// "go.mod" for the default, else go.<version>.mod; an error names the
// versions there are.
func modFile(root, version string) (string, error) {
	def, err := RuntimeVersion(root)
	if err != nil {
		return "", err
	}
	if version == def {
		return "go.mod", nil
	}
	name := "go." + version + ".mod"
	if got, err := requiredDapr(filepath.Join(root, DaprdToolDir, name)); err == nil && got == version {
		return name, nil
	}
	all, _ := RuntimeVersions(root)
	return "", fmt.Errorf("no build of Dapr runtime %s here: DAPR_VERSION takes one of %s (each has a go.<version>.mod in %s)", version, strings.Join(all, ", "), DaprdToolDir)
}

// requiredDapr is the github.com/dapr/dapr version a go.mod requires.
func requiredDapr(gomod string) (string, error) {
	f, err := os.Open(gomod)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if n := len(fields); n >= 2 && fields[n-2] == "github.com/dapr/dapr" {
			return strings.TrimPrefix(fields[n-1], "v"), nil
		}
	}
	return "", fmt.Errorf("%s does not require github.com/dapr/dapr", gomod)
}

// Daprd is a daprd binary and the version it reports.
type Daprd struct {
	Path    string
	Version string
}

// FindDaprd returns the daprd of the Dapr runtime version ("" for the
// default), in this order: $DAPRD, whatever version it is (the user chose
// it); the Dapr CLI's ~/.dapr/bin/daprd or daprd on PATH, if it reports that
// version; the one this project built before, in the user cache folder;
// else it builds one there from root/tools/daprd, reporting progress to log
// (the first build takes minutes). Concurrent callers, in this process or
// others, build at most once.
func FindDaprd(ctx context.Context, root, version string, log io.Writer) (Daprd, error) {
	if p := os.Getenv("DAPRD"); p != "" {
		return probeDaprd(ctx, p, "$DAPRD")
	}
	if version == "" {
		v, err := RuntimeVersion(root)
		if err != nil {
			return Daprd{}, err
		}
		version = v
	}
	mod, err := modFile(root, version)
	if err != nil {
		return Daprd{}, err
	}
	var installed []string
	if home, err := os.UserHomeDir(); err == nil {
		installed = append(installed, filepath.Join(home, ".dapr", "bin", "daprd"))
	}
	if p, err := exec.LookPath("daprd"); err == nil {
		installed = append(installed, p)
	}
	for _, p := range installed {
		if !isExecutable(p) {
			continue
		}
		if d, err := probeDaprd(ctx, p, p); err == nil && d.Version == version {
			return d, nil
		}
	}
	// Kept outside the checkout, so fresh clones and CI runs on the same
	// machine share it, under the hash of what it is built from.
	// Every Go file of the tool (main.go and the patched components beside
	// it) and the version's go.mod and go.sum.
	src := filepath.Join(root, DaprdToolDir)
	from, err := goFiles(src)
	if err != nil {
		return Daprd{}, err
	}
	from = append(from, mod, strings.TrimSuffix(mod, ".mod")+".sum")
	dir, err := BuildOnce("daprd-"+version, src, from, "",
		func(dir string) bool { return isExecutable(filepath.Join(dir, "daprd")) },
		func(dir string) error { return buildDaprd(ctx, root, version, mod, filepath.Join(dir, "daprd"), log) })
	if err != nil {
		return Daprd{}, err
	}
	return probeDaprd(ctx, filepath.Join(dir, "daprd"), "build cache")
}

// goFiles lists the Go files under dir, tests and the repro-* folders left
// out, as paths relative to dir, in a stable order.
func goFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), "repro-") {
			return filepath.SkipDir // the reproductions beside it are not part of daprd
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		files = append(files, rel)
		return err
	})
	return files, err
}

// cacheDir is where built tools are kept: DAPR_PUBSUB_CACHE, else
// dapr-pub-sub in the user cache folder.
func cacheDir() (string, error) {
	if dir := os.Getenv("DAPR_PUBSUB_CACHE"); dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache folder for built tools (set DAPR_PUBSUB_CACHE): %w", err)
	}
	return filepath.Join(base, "dapr-pub-sub"), nil
}

// buildTags are the tags daprd version is built with: Dapr's stable
// components, and dapr1_16 on the 1.16 line, whose components-contrib lacks
// what the patched components beside main.go use elsewhere
// (tools/daprd/compat).
func buildTags(version string) string {
	if strings.HasPrefix(version, "1.16.") {
		return "stablecomponents,dapr1_16"
	}
	return "stablecomponents"
}

// buildDaprd builds daprd version (go.mod mod of tools/daprd) into dst.
func buildDaprd(ctx context.Context, root, version, mod, dst string, log io.Writer) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return errors.New("daprd is not installed and Go is not on PATH to build it: install Go 1.24+ or set DAPRD to a daprd binary")
	}
	fmt.Fprintf(log, "Building daprd %s from the Dapr Go module into %s\n", version, filepath.Dir(dst))
	fmt.Fprintf(log, "  This happens once per machine and takes 6–8 minutes on 2 cores with empty Go caches (about 3 GB of modules). Later runs reuse it.\n")
	tmp := dst + ".tmp"
	cmd := exec.CommandContext(ctx, goBin, "build", "-modfile", mod, "-trimpath", "-tags", buildTags(version),
		"-ldflags", "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version="+version+" -X github.com/dapr/kit/logger.DaprVersion="+version, "-o", tmp, ".")
	cmd.Dir = filepath.Join(root, DaprdToolDir)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := runWithHeartbeat(cmd, log, "daprd build")
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("build daprd %s in %s failed: %w\n%s\nFix the cause above (disk space, module proxy access), or install daprd and set DAPRD=/path/to/daprd", version, cmd.Dir, err, out)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	fmt.Fprintf(log, "Built daprd %s: %s\n", version, dst)
	return nil
}

// runWithHeartbeat runs cmd, printing a line every 30 s so a long build is
// visibly alive, and returns its combined output.
func runWithHeartbeat(cmd *exec.Cmd, log io.Writer, what string) (string, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return out.String(), err
		case <-tick.C:
			fmt.Fprintf(log, "  … %s still running (%s)\n", what, time.Since(start).Round(time.Second))
		}
	}
}

// probeDaprd runs `daprd --version` to check that path works.
func probeDaprd(ctx context.Context, path, from string) (Daprd, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return Daprd{}, fmt.Errorf("daprd from %s (%s) does not run: %w: %s", from, path, err, strings.TrimSpace(string(out)))
	}
	return Daprd{Path: path, Version: strings.TrimSpace(string(out))}, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// RunWithHeartbeat runs cmd, printing a line to log every 30 s so that a
// long build is visibly alive, and returns its combined output.
func RunWithHeartbeat(cmd *exec.Cmd, log io.Writer, what string) (string, error) {
	return runWithHeartbeat(cmd, log, what)
}
