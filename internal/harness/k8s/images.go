package k8s

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// image is a container image made of files from this machine, built
// without Docker or a registry: one layer, the files at their paths (or at
// the path a file maps to), /etc/passwd and /etc/group with root and the
// distroless "nonroot" user (65532), and an entrypoint.
type image struct {
	Refs       []string          // names it is imported under, e.g. "dapr-pub-sub-subscriber:dev"
	Files      map[string]string // path in the image → path on this machine
	Entrypoint []string
	Env        []string // beside PATH
	User       string   // as in a Dockerfile's USER; "" is root
	Dirs       []string // empty folders to make (e.g. /data), writable by everyone
}

// passwd and group of every image: root and the distroless "nonroot" user
// the manifests and Dapr's control plane run as.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group  = "root:x:0:\nnonroot:x:65532:\n"
)

// writeTarball writes the images to path as one `docker save`-style
// tarball that `ctr images import` takes.
func writeTarball(path string, images []image) error {
	refs := map[name.Reference]v1.Image{}
	for _, im := range images {
		img, err := im.build()
		if err != nil {
			return fmt.Errorf("image %s: %w", im.Refs[0], err)
		}
		for _, r := range im.Refs {
			ref, err := name.NewTag(r)
			if err != nil {
				return err
			}
			refs[ref] = img
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := tarball.MultiRefWrite(refs, f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (im image) build() (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdir := func(p string, mode int64) error {
		var parts []string
		for d := filepath.Dir(p); d != "/" && d != "."; d = filepath.Dir(d) {
			parts = append([]string{d}, parts...)
		}
		parts = append(parts, p)
		for _, d := range parts {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			m := int64(0o755)
			if d == p {
				m = mode
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: m}); err != nil {
				return err
			}
		}
		return nil
	}
	file := func(p string, mode int64, data []byte) error {
		if err := mkdir(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range append([]string{"/tmp"}, im.Dirs...) {
		if err := mkdir(d, 0o1777); err != nil {
			return nil, err
		}
	}
	if err := file("/etc/passwd", 0o644, []byte(passwd)); err != nil {
		return nil, err
	}
	if err := file("/etc/group", 0o644, []byte(group)); err != nil {
		return nil, err
	}
	for dst, src := range im.Files {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		if err := file(dst, int64(fi.Mode().Perm()), data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = im.Entrypoint
	cf.Config.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, im.Env...)
	cf.Config.User = im.User
	return mutate.ConfigFile(img, cf)
}

// withLibraries adds to files the shared libraries that the binaries
// among them load (as ldd lists them), at their paths, so that a binary of
// this machine (Debian's redis-server) runs in an image.
func withLibraries(files map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range files {
		out[k] = v
	}
	for _, src := range files {
		b, err := exec.Command("ldd", src).Output()
		if err != nil {
			continue // not a dynamic binary
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			fields := strings.Fields(line)
			var lib string
			switch {
			case len(fields) >= 3 && fields[1] == "=>" && strings.HasPrefix(fields[2], "/"):
				lib = fields[2]
			case len(fields) >= 1 && strings.HasPrefix(fields[0], "/"):
				lib = fields[0] // the loader
			default:
				continue
			}
			real, err := filepath.EvalSymlinks(lib)
			if err != nil {
				return nil, err
			}
			out[lib] = real
		}
	}
	return out, nil
}

// importImages loads the tarball into containerd's k8s.io namespace, where
// the kubelet finds images (the pods use them without pulling).
func importImages(ctx context.Context, sock, tarPath string) error {
	out, err := exec.CommandContext(ctx, "ctr", "--address", sock, "-n", "k8s.io", "images", "import", tarPath).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import %s: %w: %s", tarPath, err, out)
	}
	return nil
}
