package k8s

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the cluster's certificate authority and the files made from it,
// all in dir: ca.crt/ca.key, the API server's serving pair, the service
// account signing pair, and one client pair (O=system:masters) that every
// component and the fixture itself use.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// Files in the pki's dir.
const (
	caCrt        = "ca.crt"
	apiserverCrt = "apiserver.crt"
	apiserverKey = "apiserver.key"
	saKey        = "sa.key"
	saPub        = "sa.pub"
	adminCrt     = "admin.crt"
	adminKey     = "admin.key"
)

// newPKI makes a CA valid for a year and every file the cluster needs;
// apiIPs and apiNames are the API server's addresses and names.
func newPKI(dir string, apiIPs []net.IP, apiNames []string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dapr-pub-sub-k8s-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, caKey: key}
	if p.caCert, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	if err := writePEM(filepath.Join(dir, caCrt), "CERTIFICATE", der); err != nil {
		return nil, err
	}
	if err := p.issue(apiserverCrt, apiserverKey, pkix.Name{CommonName: "kube-apiserver"}, apiIPs, apiNames, x509.ExtKeyUsageServerAuth); err != nil {
		return nil, err
	}
	if err := p.issue(adminCrt, adminKey, pkix.Name{CommonName: "dapr-pub-sub-admin", Organization: []string{"system:masters"}}, nil, nil, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, err
	}
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeKey(filepath.Join(dir, saKey), sa); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return nil, err
	}
	return p, writePEM(filepath.Join(dir, saPub), "PUBLIC KEY", pub)
}

// issue writes a certificate signed by the CA and its key.
func (p *pki) issue(crtFile, keyFile string, subject pkix.Name, ips []net.IP, names []string, usage x509.ExtKeyUsage) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     p.caCert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
		DNSNames:     names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(p.dir, crtFile), "CERTIFICATE", der); err != nil {
		return err
	}
	return writeKey(filepath.Join(p.dir, keyFile), key)
}

// kubeconfig writes a kubeconfig for server that authenticates with the
// admin pair, and returns its path.
func (p *pki) kubeconfig(name, server string) (string, error) {
	path := filepath.Join(p.dir, name+".kubeconfig")
	conf := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: dapr-pub-sub
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: dapr-pub-sub
  context:
    cluster: dapr-pub-sub
    user: admin
current-context: dapr-pub-sub
`, server, filepath.Join(p.dir, caCrt), filepath.Join(p.dir, adminCrt), filepath.Join(p.dir, adminKey))
	return path, os.WriteFile(path, []byte(conf), 0o600)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

// randomHex is n random bytes in hex: a token or a password.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
