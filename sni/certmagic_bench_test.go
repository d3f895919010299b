package sni

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// BenchmarkVersusCertmagic puts the store's GetCertificate beside certmagic's, the library a Go
// edge would otherwise use, holding the same certificates (one per name, as edgesim serves
// them) and asked for the same names in the same shuffled order, in parallel on every core:
//
//	go test ./sni -run '^$' -bench VersusCertmagic -benchtime 2s
//
// The certificates are real (parsed leaves; certmagic needs them): 100,000 take about 10 s to
// make and cache.
func BenchmarkVersusCertmagic(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		names := benchNames(n)
		certs := makeBenchCerts(b, names)
		store := New()
		bt := store.Batch()
		for i, name := range names {
			_ = bt.Set(name, certs[i])
		}
		bt.Commit()
		cache := certmagic.NewCache(certmagic.CacheOptions{
			GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return nil, nil },
		})
		cfg := certmagic.New(cache, certmagic.Config{Storage: &certmagic.FileStorage{Path: b.TempDir()}})
		for _, c := range certs {
			if _, err := cfg.CacheUnmanagedTLSCertificate(context.Background(), *c, nil); err != nil {
				b.Fatal(err)
			}
		}
		lookups := cloneAll(names)
		mrand.New(mrand.NewPCG(3, 4)).Shuffle(n, func(i, j int) { lookups[i], lookups[j] = lookups[j], lookups[i] })
		hellos := make([]*tls.ClientHelloInfo, n)
		for i, name := range lookups {
			hellos[i] = &tls.ClientHelloInfo{ServerName: name}
		}
		for _, impl := range []struct {
			name string
			get  func(*tls.ClientHelloInfo) (*tls.Certificate, error)
		}{{"store", store.GetCertificate}, {"certmagic", cfg.GetCertificate}} {
			b.Run(fmt.Sprintf("names=%d/%s", n, impl.name), func(b *testing.B) {
				var next atomic.Uint64
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					i := next.Add(7919)
					for pb.Next() {
						i++
						c, err := impl.get(hellos[i%uint64(n)])
						if err != nil || c == nil {
							b.Fatalf("%s: no certificate: %v", hellos[i%uint64(n)].ServerName, err)
						}
					}
				})
			})
		}
		cache.Stop()
	}
}

// makeBenchCerts issues one ECDSA certificate per name from a throwaway CA, all with one key.
func makeBenchCerts(b *testing.B, names []string) []*tls.Certificate {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	out := make([]*tls.Certificate, len(names))
	for i, name := range names {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: name},
			DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, key)
		if err != nil {
			b.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		out[i] = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	}
	return out
}
