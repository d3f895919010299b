package main

// The public-key operations a server does per full handshake, in Go, to set against
// `openssl speed rsa2048 ecdsap256 ecdhx25519` (bench/compare.sh runs both on CPU 0):
//
//	go test ./cmd/edgesim -run '^$' -bench '^BenchmarkServerCrypto$' -benchtime 2s

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
)

func BenchmarkServerCrypto(b *testing.B) {
	digest := sha256.Sum256([]byte("handshake transcript"))
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("op=rsa2048-sign-pkcs1v15", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rsa.SignPKCS1v15(rand.Reader, rsaKey, crypto.SHA256, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=rsa2048-sign-pss", func(b *testing.B) { // what TLS 1.3 uses with an RSA key
		b.ReportAllocs()
		opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
		for b.Loop() {
			if _, err := rsa.SignPSS(rand.Reader, rsaKey, crypto.SHA256, digest[:], opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=ecdsap256-sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ecdsa.SignASN1(rand.Reader, ecKey, digest[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=x25519-keygen+shared", func(b *testing.B) { // a server's key share and its secret
		peer, _ := ecdh.X25519().GenerateKey(rand.Reader)
		b.ReportAllocs()
		for b.Loop() {
			k, err := ecdh.X25519().GenerateKey(rand.Reader)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := k.ECDH(peer.PublicKey()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
