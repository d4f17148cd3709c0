package pki

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func mustEnsure(t *testing.T, dir string, hosts []string, now time.Time) *Bundle {
	t.Helper()
	b, err := Ensure(dir, hosts, now)
	if err != nil {
		t.Fatalf("Ensure(%v, %v): %v", hosts, now, err)
	}
	return b
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestEnsureCreatesFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	b := mustEnsure(t, dir, []string{"VMSSD.Example.", "10.0.0.7", "[fd00::1]", "*.apps.example"}, t0)

	for _, tc := range []struct {
		name string
		perm os.FileMode
	}{
		{CACertFile, 0o644},
		{CAKeyFile, 0o600},
		{ServerCertFile, 0o644},
		{ServerKeyFile, 0o600},
	} {
		fi, err := os.Stat(filepath.Join(dir, tc.name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tc.perm {
			t.Errorf("%s: mode %v, want %v", tc.name, got, tc.perm)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 4 {
		t.Errorf("dir holds %d entries, want 4 (temporary files left behind?)", len(entries))
	}

	if b.CAFile != filepath.Join(dir, CACertFile) {
		t.Errorf("CAFile = %q", b.CAFile)
	}
	if !bytes.Equal(b.CACertPEM, readFile(t, b.CAFile)) {
		t.Error("CACertPEM differs from ca.crt")
	}
	ca, err := parseCert(b.CACertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Subject.CommonName != CACommonName || !ca.IsCA || !ca.MaxPathLenZero {
		t.Errorf("CA subject %q IsCA %v MaxPathLenZero %v", ca.Subject.CommonName, ca.IsCA, ca.MaxPathLenZero)
	}
	if pub, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key %T, want ECDSA P-256", ca.PublicKey)
	}
	if !ca.NotAfter.Equal(t0.Add(CAValidity).Truncate(time.Second)) {
		t.Errorf("CA NotAfter %v, want %v", ca.NotAfter, t0.Add(CAValidity))
	}

	leaf := b.Server.Leaf
	if leaf == nil {
		t.Fatal("Server.Leaf is nil")
	}
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Errorf("server certificate not signed by CA: %v", err)
	}
	if !leaf.NotAfter.Equal(t0.Add(ServerValidity).Truncate(time.Second)) {
		t.Errorf("server NotAfter %v, want %v", leaf.NotAfter, t0.Add(ServerValidity))
	}
	wantDNS := []string{"localhost", "vmssd.example", "*.apps.example"}
	if !slices.Equal(leaf.DNSNames, wantDNS) {
		t.Errorf("DNSNames = %v, want %v", leaf.DNSNames, wantDNS)
	}
	var gotIPs []string
	for _, ip := range leaf.IPAddresses {
		gotIPs = append(gotIPs, ip.String())
	}
	if want := []string{"127.0.0.1", "::1", "10.0.0.7", "fd00::1"}; !slices.Equal(gotIPs, want) {
		t.Errorf("IPAddresses = %v, want %v", gotIPs, want)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage = %v", leaf.ExtKeyUsage)
	}
}

func TestEnsureReuse(t *testing.T) {
	dir := t.TempDir()
	first := mustEnsure(t, dir, []string{"a.example", "10.1.2.3"}, t0)

	tests := []struct {
		name  string
		hosts []string
		now   time.Time
	}{
		{"same hosts", []string{"a.example", "10.1.2.3"}, t0},
		{"same hosts other spelling and order", []string{"10.1.2.3", "A.EXAMPLE.", "localhost"}, t0},
		{"subset of hosts", []string{"a.example"}, t0},
		{"no extra hosts", nil, t0},
		{"later, outside the renewal window", []string{"a.example"}, t0.Add(ServerValidity - RenewBefore - time.Hour)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := mustEnsure(t, dir, tc.hosts, tc.now)
			if !bytes.Equal(b.CACertPEM, first.CACertPEM) {
				t.Error("CA changed")
			}
			if !bytes.Equal(b.Server.Certificate[0], first.Server.Certificate[0]) {
				t.Error("server certificate re-issued")
			}
		})
	}
}

func TestEnsureReissuesServerCert(t *testing.T) {
	tests := []struct {
		name   string
		hosts  []string
		now    time.Time
		tamper func(t *testing.T, dir string)
	}{
		{name: "new DNS name", hosts: []string{"a.example", "b.example"}, now: t0},
		{name: "new IP", hosts: []string{"a.example", "192.168.1.1"}, now: t0},
		{name: "within renewal window", hosts: []string{"a.example"}, now: t0.Add(ServerValidity - RenewBefore + time.Hour)},
		{name: "expired", hosts: []string{"a.example"}, now: t0.Add(ServerValidity + time.Hour)},
		{name: "server key missing", hosts: []string{"a.example"}, now: t0, tamper: func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, ServerKeyFile)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "server certificate garbage", hosts: []string{"a.example"}, now: t0, tamper: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, ServerCertFile), []byte("junk"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "server key from another pair", hosts: []string{"a.example"}, now: t0, tamper: func(t *testing.T, dir string) {
			other := t.TempDir()
			mustEnsure(t, other, nil, t0)
			key := readFile(t, filepath.Join(other, ServerKeyFile))
			if err := os.WriteFile(filepath.Join(dir, ServerKeyFile), key, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "server pair signed by another CA", hosts: []string{"a.example"}, now: t0, tamper: func(t *testing.T, dir string) {
			other := mustEnsure(t, t.TempDir(), []string{"a.example"}, t0)
			odir := filepath.Dir(other.CAFile)
			for _, f := range []string{ServerCertFile, ServerKeyFile} {
				if err := os.WriteFile(filepath.Join(dir, f), readFile(t, filepath.Join(odir, f)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			first := mustEnsure(t, dir, []string{"a.example"}, t0)
			if tc.tamper != nil {
				tc.tamper(t, dir)
			}
			b := mustEnsure(t, dir, tc.hosts, tc.now)
			if !bytes.Equal(b.CACertPEM, first.CACertPEM) {
				t.Fatal("CA changed")
			}
			if bytes.Equal(b.Server.Certificate[0], first.Server.Certificate[0]) {
				t.Fatal("server certificate was not re-issued")
			}
			ca, _ := parseCert(b.CACertPEM)
			if err := b.Server.Leaf.CheckSignatureFrom(ca); err != nil {
				t.Fatalf("new server certificate not signed by CA: %v", err)
			}
			for _, h := range tc.hosts {
				if err := b.Server.Leaf.VerifyHostname(h); err != nil {
					t.Errorf("new certificate does not cover %q: %v", h, err)
				}
			}
			// What was written is what is returned, and is now reused.
			again := mustEnsure(t, dir, tc.hosts, tc.now)
			if !bytes.Equal(again.Server.Certificate[0], b.Server.Certificate[0]) {
				t.Error("re-issued certificate not reused by the next call")
			}
		})
	}
}

func TestEnsureCAStates(t *testing.T) {
	t.Run("interrupted CA creation (key without certificate) starts over", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		mustEnsure(t, dir, nil, t0)
	})
	errorCases := []struct {
		name   string
		now    time.Time
		tamper func(t *testing.T, dir string)
	}{
		{"CA key missing", t0, func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
				t.Fatal(err)
			}
		}},
		{"CA key does not match", t0, func(t *testing.T, dir string) {
			other := t.TempDir()
			mustEnsure(t, other, nil, t0)
			if err := os.WriteFile(filepath.Join(dir, CAKeyFile), readFile(t, filepath.Join(other, CAKeyFile)), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"CA certificate garbage", t0, func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, CACertFile), []byte("junk"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"CA expired", t0.Add(CAValidity + time.Hour), nil},
	}
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			mustEnsure(t, dir, nil, t0)
			if tc.tamper != nil {
				tc.tamper(t, dir)
			}
			caBefore := readFile(t, filepath.Join(dir, CACertFile))
			if _, err := Ensure(dir, nil, tc.now); err == nil {
				t.Fatal("Ensure succeeded, want an error")
			}
			if !bytes.Equal(readFile(t, filepath.Join(dir, CACertFile)), caBefore) {
				t.Error("Ensure replaced the CA certificate")
			}
		})
	}
}

func TestEnsureInvalidHost(t *testing.T) {
	for _, h := range []string{"host:443", "a b", "https://x", "a..b", "-/x"} {
		if _, err := Ensure(t.TempDir(), []string{h}, t0); err == nil {
			t.Errorf("Ensure with host %q succeeded, want an error", h)
		}
	}
}

// TestTLSHandshake serves the bundle over a real TLS listener and connects
// with clients that trust only the CA.
func TestTLSHandshake(t *testing.T) {
	b := mustEnsure(t, t.TempDir(), []string{"vmssd.example"}, time.Now())

	ln, err := tls.Listen("tcp", "127.0.0.1:0", b.ServerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	tests := []struct {
		name       string
		serverName string
		roots      *x509.CertPool
		maxVersion uint16
		wantErr    bool
	}{
		{"localhost", "localhost", b.ClientPool(), 0, false},
		{"IPv4 loopback", "127.0.0.1", b.ClientPool(), 0, false},
		{"IPv6 loopback", "::1", b.ClientPool(), 0, false},
		{"extra host", "vmssd.example", b.ClientPool(), 0, false},
		{"TLS 1.2 client", "vmssd.example", b.ClientPool(), tls.VersionTLS12, false},
		{"host not in SANs", "other.example", b.ClientPool(), 0, true},
		{"client not trusting the CA", "localhost", x509.NewCertPool(), 0, true},
		{"TLS 1.1 client", "localhost", b.ClientPool(), tls.VersionTLS11, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := &http.Client{
				Timeout: 10 * time.Second,
				Transport: &http.Transport{
					// Always reach the test listener, whatever the URL's host.
					DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
						var d net.Dialer
						return d.DialContext(ctx, network, addr)
					},
					TLSClientConfig: &tls.Config{
						RootCAs:    tc.roots,
						ServerName: tc.serverName,
						MinVersion: tls.VersionTLS10,
						MaxVersion: tc.maxVersion,
					},
				},
			}
			defer client.CloseIdleConnections()
			resp, err := client.Get("https://vmssd.test/")
			if tc.wantErr {
				if err == nil {
					resp.Body.Close()
					t.Fatal("request succeeded, want a TLS error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if string(body) != "ok" {
				t.Errorf("body %q", body)
			}
		})
	}
}
