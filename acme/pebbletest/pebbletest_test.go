package pebbletest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestStart fetches the directory over HTTPS trusting only Roots.
func TestStart(t *testing.T) {
	p := Start(t, Options{Resolver: "127.0.0.1:1"}) // no validation happens here
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Roots}},
	}
	resp, err := client.Get(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var dir map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&dir); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"newAccount", "newOrder", "newNonce"} {
		if _, ok := dir[k]; !ok {
			t.Errorf("directory has no %s: %v", k, dir)
		}
	}
	if p.IssuerRoots == nil || p.IssuerRoots.Equal(x509.NewCertPool()) {
		t.Error("no issuer roots")
	}
}
