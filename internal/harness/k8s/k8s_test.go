package k8s

import (
	"archive/tar"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"dapr-pub-sub/internal/harness/proc"
)

// TestControlPlaneVersion: the control plane is built from the Dapr that
// daprd is (tools/daprd's go.mod sets it; tools/dapr-control-plane must
// follow).
func TestControlPlaneVersion(t *testing.T) {
	root, err := proc.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := proc.RuntimeVersion(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, ControlPlaneDir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\nrequire github.com/dapr/dapr v"+want+"\n") {
		t.Errorf("%s/go.mod does not require github.com/dapr/dapr v%s (tools/daprd's): change both together", ControlPlaneDir, want)
	}
}

// TestPKI: the API server's certificate and the admin's are signed by the
// CA, for what they are used for, the API server's for its addresses.
func TestPKI(t *testing.T) {
	dir := t.TempDir()
	if _, err := newPKI(dir, []net.IP{net.ParseIP(NodeAddr)}, []string{"kubernetes.default.svc"}); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, filepath.Join(dir, caCrt)))
	api := readCert(t, filepath.Join(dir, apiserverCrt))
	for _, host := range []string{NodeAddr, "kubernetes.default.svc"} {
		if _, err := api.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the API server's certificate for %s: %v", host, err)
		}
	}
	admin := readCert(t, filepath.Join(dir, adminCrt))
	if _, err := admin.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the admin certificate: %v", err)
	}
	if g := admin.Subject.Organization; len(g) != 1 || g[0] != "system:masters" {
		t.Errorf("the admin certificate's groups: %v", g)
	}
	for _, f := range []string{saKey, saPub, adminKey, apiserverKey} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", f, fi.Mode(), err)
		}
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestImageTarball: an image holds its files, passwd and group with the
// nonroot user, its entrypoint and user, under every name.
func TestImageTarball(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "app")
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "images.tar")
	if err := writeTarball(path, []image{{Refs: []string{"dapr-pub-sub.test/aa:1", "dapr-pub-sub.test/bb:1"}, Files: map[string]string{"/app": bin},
		Entrypoint: []string{"/app"}, User: "65532:65532", Dirs: []string{"/data"}}}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"dapr-pub-sub.test/aa:1", "dapr-pub-sub.test/bb:1"} {
		tag, _ := name.NewTag(ref)
		img, err := tarball.ImageFromPath(path, &tag)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.Entrypoint[0] != "/app" || cf.Config.User != "65532:65532" || cf.OS != "linux" {
			t.Errorf("%s: config %+v", ref, cf.Config)
		}
		layers, _ := img.Layers()
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		files := map[string]string{}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(tr)
			files[h.Name] = string(b)
			if h.Name == "app" && h.Mode&0o111 == 0 {
				t.Errorf("/app is not executable: %o", h.Mode)
			}
		}
		rc.Close()
		if files["app"] != "#!/bin/true\n" || !strings.Contains(files["etc/passwd"], "nonroot:x:65532:65532") {
			t.Errorf("%s: files %v", ref, files)
		}
		if _, ok := files["data/"]; !ok {
			t.Errorf("%s: no /data", ref)
		}
	}
}

// TestSplitChart: the chart's CRDs, its Configuration, the rest.
func TestSplitChart(t *testing.T) {
	crds, config, rest := splitChart("---\nkind: CustomResourceDefinition\nx: 1\n---\nkind: Deployment\ny: 2\n---\nkind: Configuration\nz: 3\n")
	if !strings.Contains(crds, "x: 1") || strings.Contains(crds, "z: 3") || !strings.Contains(config, "z: 3") || strings.Contains(config, "y: 2") || !strings.Contains(rest, "y: 2") || strings.Contains(rest, "x: 1") {
		t.Errorf("crds %q, config %q, rest %q", crds, config, rest)
	}
}

// TestLogFollower: lines of the kubelet's log files, CRI partial records
// joined, read on from a file deleted after it was seen.
func TestLogFollower(t *testing.T) {
	old := StateDir
	StateDir = t.TempDir()
	t.Cleanup(func() { StateDir = old })
	dir := filepath.Join(StateDir, "pod-logs", "ns_pod-a_uid", "subscriber")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make(chan string, 10)
	l := FollowLogs("ns", "subscriber", func(pod, line string) { got <- pod + ": " + line })
	defer l.Stop()
	write := func(text string) {
		if _, err := f.WriteString(text); err != nil {
			t.Fatal(err)
		}
	}
	write("2026-12-03T00:00:00Z stdout F one\n2026-12-03T00:00:00Z stdout P tw")
	expect(t, got, "pod-a: one")
	write("o-\n2026-12-03T00:00:00Z stdout F halves\n")
	expect(t, got, "pod-a: two-halves")
	l.Flush()
	os.Remove(f.Name())
	write("2026-12-03T00:00:00Z stdout F after the pod is gone\n")
	expect(t, got, "pod-a: after the pod is gone")
}

func expect(t *testing.T, got chan string, want string) {
	t.Helper()
	select {
	case g := <-got:
		if g != want {
			t.Fatalf("got %q, want %q", g, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no %q in 5 s", want)
	}
}
