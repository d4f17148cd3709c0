// Package pki manages vmssd's local certificate authority and the TLS
// certificate of its HTTPS endpoints.
//
// Azure clients insist on TLS: azidentity refuses a non-https authority host
// and azcore refuses to send bearer tokens over plain http. A self-hosted
// vmssd therefore needs a certificate its clients can trust without a public
// CA. Ensure keeps, in one directory:
//
//	ca.crt      self-signed CA certificate (ECDSA P-256, 10 years); hand it to
//	            clients (REQUESTS_CA_BUNDLE, an http.Transport's RootCAs, ...)
//	ca.key      the CA private key (mode 0600)
//	server.crt  the server certificate (1 year), signed by the CA
//	server.key  the server private key (mode 0600)
//
// The CA is created once and never replaced automatically, since clients
// have been told to trust it. The server certificate is cheap and is
// re-issued whenever it is missing, unreadable, not signed by the CA, close
// to expiry or does not name every host the server must answer for.
//
// Every file is written atomically (temporary file, fsync, rename), so a
// crash leaves either the old or the new content, never a torn file.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vmssd/vmssd/internal/fsutil"
)

// File names inside the directory given to Ensure.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
)

// Validity periods and the renewal window of the server certificate.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 365 * 24 * time.Hour
	// RenewBefore is how long before its expiry the server certificate is
	// re-issued by Ensure.
	RenewBefore = 30 * 24 * time.Hour
	// backdate is subtracted from NotBefore so that clients whose clock is
	// slightly behind accept a freshly issued certificate.
	backdate = time.Hour
)

// CACommonName is the subject common name of the generated CA.
const CACommonName = "vmssd local CA"

// serverCommonName is the subject common name of server certificates. Clients
// check the SANs, never the CN.
const serverCommonName = "vmssd server"

// defaultHosts are always in the server certificate's SANs.
var defaultHosts = []string{"127.0.0.1", "::1", "localhost"}

// Bundle is the loaded CA certificate and server key pair.
type Bundle struct {
	// CACertPEM is the PEM-encoded CA certificate, for clients to trust.
	CACertPEM []byte
	// CAFile is the path of the CA certificate file.
	CAFile string
	// Server is the server certificate and key, with Leaf set.
	Server tls.Certificate
}

// ServerTLSConfig returns a new TLS configuration (TLS 1.2 or later) serving
// the bundle's server certificate.
func (b *Bundle) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{b.Server},
	}
}

// ClientPool returns a new certificate pool holding only the CA certificate:
// use it as RootCAs of clients that talk to the server.
func (b *Bundle) ClientPool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CACertPEM)
	return pool
}

// Ensure loads the CA and server certificate kept in dir, creating dir and
// whatever is missing. The server certificate covers 127.0.0.1, ::1,
// localhost and extraHosts (DNS names, wildcard names such as
// "*.vmssd.local", or IP addresses); it is re-issued when it does not cover
// them all, expires within RenewBefore of now, or was not signed by the CA.
//
// A CA certificate whose key is missing, or that is expired at now, is an
// error: Ensure never replaces a CA on its own, since clients trust it. To
// start over, remove the directory. Ensure must not run concurrently on the
// same directory.
func Ensure(dir string, extraHosts []string, now time.Time) (*Bundle, error) {
	dnsNames, ips, err := normalizeHosts(extraHosts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: create directory: %w", err)
	}
	caCert, caKey, caPEM, err := ensureCA(dir, now)
	if err != nil {
		return nil, err
	}
	server, err := ensureServer(dir, caCert, caKey, dnsNames, ips, now)
	if err != nil {
		return nil, err
	}
	return &Bundle{
		CACertPEM: caPEM,
		CAFile:    filepath.Join(dir, CACertFile),
		Server:    server,
	}, nil
}

// normalizeHosts merges the default hosts and extra, and splits them into
// DNS names (lower case, no trailing dot) and IP addresses, without
// duplicates.
func normalizeHosts(extra []string) ([]string, []net.IP, error) {
	var dnsNames []string
	var ips []net.IP
	for _, h := range slices.Concat(defaultHosts, extra) {
		h = strings.TrimSpace(h)
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		}
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		name := strings.TrimSuffix(strings.ToLower(h), ".")
		if !validDNSName(name) {
			return nil, nil, fmt.Errorf("pki: invalid host %q: want a DNS name or an IP address", h)
		}
		if !slices.Contains(dnsNames, name) {
			dnsNames = append(dnsNames, name)
		}
	}
	return dnsNames, ips, nil
}

// validDNSName accepts host names made of letters, digits, '-' and '_'
// labels, optionally starting with a "*." wildcard label.
func validDNSName(name string) bool {
	name = strings.TrimPrefix(name, "*.")
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return false
			}
		}
	}
	return true
}

// ensureCA loads the CA or, when no CA certificate exists, creates one.
func ensureCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, []byte, error) {
	certPath := filepath.Join(dir, CACertFile)
	keyPath := filepath.Join(dir, CAKeyFile)

	certPEM, err := os.ReadFile(certPath)
	switch {
	case err == nil:
		return loadCA(certPEM, keyPath, now)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, nil, nil, fmt.Errorf("pki: read CA certificate: %w", err)
	}

	// No CA certificate: nobody can trust this CA yet, so (re)creating it is
	// safe, even over a ca.key left behind by an interrupted earlier run.
	// The key is written before the certificate for that reason.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: CACommonName, Organization: []string{"vmssd"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: parse new CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return nil, nil, nil, fmt.Errorf("pki: write CA key: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return nil, nil, nil, fmt.Errorf("pki: write CA certificate: %w", err)
	}
	return cert, key, certPEM, nil
}

// loadCA parses an existing CA certificate and its key and checks that they
// belong together and that the CA is usable at now.
func loadCA(certPEM []byte, keyPath string, now time.Time) (*x509.Certificate, crypto.Signer, []byte, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, nil, nil, errors.New("pki: CA certificate is not a CA")
	}
	if now.After(cert.NotAfter) {
		return nil, nil, nil, fmt.Errorf("pki: CA certificate expired on %s; remove %s and %s to create a new CA (clients must then trust the new one)",
			cert.NotAfter.Format(time.RFC3339), CACertFile, CAKeyFile)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: read CA key: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("pki: CA key: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, nil, nil, errors.New("pki: CA key does not match the CA certificate")
	}
	return cert, key, certPEM, nil
}

// ensureServer loads the server key pair, re-issuing it when it is unusable.
func ensureServer(dir string, caCert *x509.Certificate, caKey crypto.Signer, dnsNames []string, ips []net.IP, now time.Time) (tls.Certificate, error) {
	certPath := filepath.Join(dir, ServerCertFile)
	keyPath := filepath.Join(dir, ServerKeyFile)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		if c.Leaf == nil {
			c.Leaf, _ = x509.ParseCertificate(c.Certificate[0])
		}
		if serverCertUsable(c.Leaf, caCert, dnsNames, ips, now) {
			return c, nil
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	notAfter := now.Add(ServerValidity)
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: serverCommonName, Organization: []string{"vmssd"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: create server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: parse new server certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	// Key first: a crash between the two writes leaves a pair that does not
	// match, which the next Ensure detects and repairs.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: write server key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: write server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// serverCertUsable reports whether leaf was signed by ca, is valid at now for
// at least RenewBefore more, and names every host.
func serverCertUsable(leaf, ca *x509.Certificate, dnsNames []string, ips []net.IP, now time.Time) bool {
	if leaf == nil || leaf.CheckSignatureFrom(ca) != nil {
		return false
	}
	if now.Before(leaf.NotBefore) || now.Add(RenewBefore).After(leaf.NotAfter) {
		return false
	}
	for _, name := range dnsNames {
		if !slices.Contains(leaf.DNSNames, name) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pki: generate serial number: %w", err)
	}
	return serial, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// parseKey accepts PKCS#8 ("PRIVATE KEY") and SEC 1 ("EC PRIVATE KEY") PEM.
func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	return signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// writeFileAtomic replaces path with data: it writes a temporary file in the
// same directory with mode perm, syncs it, renames it over path and syncs
// the directory.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	if err := fsutil.WriteFile(path, data, perm); err != nil {
		return err
	}
	return fsutil.SyncDir(filepath.Dir(path))
}
