package ftpd_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"

	"github.com/ftpsync-mount/ftpsync-mount/internal/ftpd"
)

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestServerTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	t.Run("explicit", func(t *testing.T) {
		root := t.TempDir()
		srv, err := ftpd.Start(ftpd.Options{Root: root, Addr: "127.0.0.1:0", User: "u", Password: "p",
			TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		c, err := ftp.Dial(srv.Addr(), ftp.DialWithExplicitTLS(cfg), ftp.DialWithTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Quit()
		if err := c.Login("u", "p"); err != nil {
			t.Fatal(err)
		}
		if err := c.Stor("f.txt", strings.NewReader("over tls")); err != nil {
			t.Fatal(err)
		}
		r, err := c.Retr("f.txt")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if string(got) != "over tls" {
			t.Fatalf("read back %q", got)
		}
		if b, _ := os.ReadFile(filepath.Join(root, "f.txt")); string(b) != "over tls" {
			t.Fatalf("on disk %q", b)
		}
	})
}
