package domains

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAPIFlow walks the Expressway procedure over HTTP: add, CSR, sign, upload, view, delete;
// and checks that a real TLS handshake presents what was uploaded.
func TestAPIFlow(t *testing.T) {
	e := newEnv(t, "", nil)
	ca := newTestCA(t)

	var in Info
	e.ok(t, "POST", "/api/v1/domains", map[string]string{"domain": "Example.COM."}, http.StatusCreated, &in)
	if in.Domain != "example.com" || !slices.Equal(in.Hosts, []string{"mra.example.com"}) || in.Source != SourceNone || in.ACME.State != ACMEOff {
		t.Fatalf("added: %+v", in)
	}
	var csr CSRInfo
	e.ok(t, "POST", "/api/v1/domains/example.com/csr", []byte{}, http.StatusCreated, &csr)
	if csr.Key != "rsa-2048" || csr.Digest != "sha256" || !slices.Equal(csr.SANs, []string{"mra.example.com", "example.com"}) ||
		csr.Subject != "CN=mra.example.com" || len(csr.Warnings) != 0 {
		t.Fatalf("csr: %+v", csr)
	}
	pemCSR := e.ok(t, "GET", "/api/v1/domains/example.com/csr?format=pem", nil, http.StatusOK, nil)
	if string(pemCSR) != csr.CSR {
		t.Fatalf("GET csr?format=pem differs from the CSR made")
	}
	var again CSRInfo
	e.ok(t, "GET", "/api/v1/domains/example.com/csr", nil, http.StatusOK, &again)
	if again.CSR != csr.CSR {
		t.Fatal("GET csr differs from the CSR made")
	}
	var list struct{ Domains []Info }
	e.ok(t, "GET", "/api/v1/domains", nil, http.StatusOK, &list)
	if len(list.Domains) != 1 || !list.Domains[0].CSRPending {
		t.Fatalf("list: %+v", list)
	}

	chain := ca.signCSR(t, pemCSR, nil)
	var det Details
	e.ok(t, "PUT", "/api/v1/domains/example.com/certificate", chain, http.StatusOK, &det)
	if det.Source != SourceUpload || det.KeyType != "RSA" || det.KeySize != 2048 || det.ChainLength != 2 ||
		!slices.Equal(det.EKUs, []string{"serverAuth", "clientAuth"}) || len(det.Warnings) != 0 || len(det.SHA256) != 95 {
		t.Fatalf("uploaded: %+v", det)
	}
	// served at once: a verified handshake with the SNI host presents it
	leaf := handshakeWith(t, e.sni, "mra.example.com", ca.pool())
	if leaf.SerialNumber.Cmp(mustParse(t, chain).SerialNumber) != 0 {
		t.Fatal("the handshake did not present the uploaded certificate")
	}
	e.ok(t, "GET", "/api/v1/domains/example.com", nil, http.StatusOK, &in)
	if in.CSRPending || in.Source != SourceUpload || in.Issuer != "CN=test CA" || in.NotAfter.IsZero() {
		t.Fatalf("after upload: %+v", in)
	}
	st, hdr, body := e.call(t, "GET", "/api/v1/domains/example.com/certificate?format=pem", "", nil)
	if st != 200 || hdr.Get("Content-Type") != "application/x-pem-file" || !bytes.Equal(body, chain) {
		t.Fatalf("GET certificate?format=pem: %d %s\n%s", st, hdr.Get("Content-Type"), body)
	}
	var shown Details
	e.ok(t, "GET", "/api/v1/domains/example.com/certificate", nil, http.StatusOK, &shown)
	if shown.SHA256 != det.SHA256 || shown.Serial == "" || shown.SignatureAlgorithm != "ECDSA-SHA256" || len(shown.Chain) != 2 {
		t.Fatalf("show: %+v", shown)
	}
	// the CSR was consumed
	if st, _, _ := e.call(t, "GET", "/api/v1/domains/example.com/csr", "", nil); st != http.StatusNotFound {
		t.Fatalf("CSR after upload: %d", st)
	}
	var msg Message
	e.ok(t, "DELETE", "/api/v1/domains/example.com", nil, http.StatusOK, &msg)
	if !strings.Contains(msg.Message, "example.com deleted") || len(e.sni.hosts()) != 0 {
		t.Fatalf("delete: %+v, hosts left %v", msg, e.sni.hosts())
	}
	e.ok(t, "GET", "/api/v1/domains", nil, http.StatusOK, &list)
	if len(list.Domains) != 0 {
		t.Fatalf("list after delete: %+v", list)
	}
	if body := e.ok(t, "GET", "/healthz", nil, 200, nil); string(body) != "ok\n" {
		t.Fatalf("healthz: %q", body)
	}
	assertNoKeys(t, e, nil)
}

func mustParse(t *testing.T, chain []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(chain)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// handshakeWith runs a TLS handshake on loopback against a server answering from rec, verifying
// the chain against roots and the name sni, and returns the leaf presented.
func handshakeWith(t *testing.T, rec *sniRecorder, sni string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if c := rec.certs[h.ServerName]; c != nil {
			return c, nil
		}
		return nil, errors.New("no certificate")
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{ServerName: sni, RootCAs: roots})
	if err != nil {
		t.Fatalf("handshake with SNI %s: %v", sni, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// assertNoKeys checks that no API answer and no log line holds a private key.
func assertNoKeys(t *testing.T, e *env, keys [][]byte) {
	t.Helper()
	all := e.outputs.String() + e.logs.String()
	if strings.Contains(all, "PRIVATE KEY") {
		t.Fatal("an API answer or a log line holds a PEM private key")
	}
	// and every key the Manager stored, plus those the test uploaded
	for _, name := range []string{keyFile, csrKeyFile} {
		for _, d := range e.m.List() {
			if b, err := e.store.Load(t.Context(), fileKey(d.Domain, name)); err == nil {
				keys = append(keys, b)
			}
		}
	}
	for _, k := range keys {
		for _, frag := range keyMaterial(k) {
			if strings.Contains(all, frag) {
				t.Fatalf("output holds key bytes %q", frag)
			}
		}
	}
}

func TestAPIErrors(t *testing.T) {
	e := newEnv(t, "", nil)
	ca := newTestCA(t)
	for _, d := range []string{"example.com", "csr.example", "multi.example"} {
		e.ok(t, "POST", "/api/v1/domains", map[string]string{"domain": d}, http.StatusCreated, nil)
	}
	var csr CSRInfo
	e.ok(t, "POST", "/api/v1/domains/csr.example/csr", map[string]string{"key": "ecdsa-p256"}, http.StatusCreated, &csr)

	goodCert, goodKey := ca.issue(t, []string{"mra.example.com", "example.com"}, nil)
	otherCert, _ := ca.issue(t, []string{"mra.example.com"}, nil)
	expired, expiredKey := ca.issue(t, []string{"mra.example.com"}, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	})
	future, futureKey := ca.issue(t, []string{"mra.example.com"}, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour)
	})
	wrong, wrongKey := ca.issue(t, []string{"mra.other.example", "other.example"}, nil)
	badWild, badWildKey := ca.issue(t, []string{"mra*.example.com", "*.*.com"}, nil)
	cnOnly, cnOnlyKey := ca.issue(t, []string{"mra.example.com"}, func(c *x509.Certificate) { c.DNSNames = nil })
	// an encrypted key as older openssl writes it (Proc-Type header), and as PKCS#8
	legacyEnc := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1, 2, 3}})
	pkcs8Enc := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1, 2, 3}})
	fromCSR := ca.signCSR(t, []byte(csr.CSR), nil)
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	notForCSR := ca.sign(t, &otherKey.PublicKey, []string{"mra.csr.example"}, nil)
	jsonUp := func(cert, key []byte) []byte {
		b, _ := json.Marshal(map[string]string{"certificate": string(cert), "key": string(key)})
		return b
	}
	big := bytes.Repeat([]byte("A"), MaxBody+1)

	tests := []struct {
		name, method, path string
		body               []byte
		status             int
		kind               error
		want               []string
	}{
		{"add bad name", "POST", "/api/v1/domains", []byte(`{"domain":"exa mple.com"}`), 400, ErrBadDomain, []string{"letters, digits"}},
		{"add one label", "POST", "/api/v1/domains", []byte(`{"domain":"localhost"}`), 400, ErrBadDomain, []string{"two labels"}},
		{"add wildcard", "POST", "/api/v1/domains", []byte(`{"domain":"*.example.org"}`), 400, ErrBadDomain, []string{"not a wildcard"}},
		{"add no domain", "POST", "/api/v1/domains", []byte(`{}`), 400, ErrBadRequest, []string{`{"domain": "example.com"}`}},
		{"add empty body", "POST", "/api/v1/domains", nil, 400, ErrBadRequest, []string{"empty"}},
		{"add unknown field", "POST", "/api/v1/domains", []byte(`{"domian":"x.com"}`), 400, ErrBadRequest, []string{`unknown field "domian"`}},
		{"add duplicate", "POST", "/api/v1/domains", []byte(`{"domain":"EXAMPLE.com"}`), 409, ErrExists, []string{"example.com is already added"}},
		{"get unknown", "GET", "/api/v1/domains/nope.example", nil, 404, ErrNotFound, []string{"nope.example is not added"}},
		{"get bad name", "GET", "/api/v1/domains/bad_name.example", nil, 400, ErrBadDomain, []string{"bad_name"}},
		{"delete unknown", "DELETE", "/api/v1/domains/nope.example", nil, 404, ErrNotFound, []string{"not added"}},
		{"show none", "GET", "/api/v1/domains/example.com/certificate", nil, 404, ErrNoCert, []string{"no certificate loaded", "edgesim domains csr example.com"}},
		{"show pem none", "GET", "/api/v1/domains/csr.example/certificate?format=pem", nil, 404, ErrNoCert, []string{"a CSR is pending"}},
		{"csr bad key", "POST", "/api/v1/domains/example.com/csr", []byte(`{"key":"dsa-1024"}`), 400, ErrBadRequest, []string{`key "dsa-1024" is not offered`, "rsa-4096"}},
		{"csr bad digest", "POST", "/api/v1/domains/example.com/csr", []byte(`{"digest":"md5"}`), 400, ErrBadRequest, []string{`digest "md5"`, "sha512"}},
		{"csr bad san format", "POST", "/api/v1/domains/example.com/csr", []byte(`{"san_format":"srv"}`), 400, ErrBadRequest, []string{"collab-edge.example.com"}},
		{"csr bad country", "POST", "/api/v1/domains/example.com/csr", []byte(`{"subject":{"c":"GBR"}}`), 400, ErrBadRequest, []string{"two-letter"}},
		{"csr bad extra san", "POST", "/api/v1/domains/example.com/csr", []byte(`{"sans":["mra*.example.com"]}`), 400, ErrBadRequest, []string{"whole left-most label"}},
		{"csr bad json", "POST", "/api/v1/domains/example.com/csr", []byte(`{"key":`), 400, ErrBadRequest, []string{"not the JSON expected"}},
		{"csr unknown domain", "POST", "/api/v1/domains/nope.example/csr", nil, 404, ErrNotFound, []string{"not added"}},
		{"csr second", "POST", "/api/v1/domains/csr.example/csr", nil, 409, ErrCSRPending, []string{"already pending", "discard it first"}},
		{"csr get none", "GET", "/api/v1/domains/example.com/csr", nil, 404, ErrNoCSR, []string{"no CSR is pending for example.com"}},
		{"csr discard none", "DELETE", "/api/v1/domains/example.com/csr", nil, 404, ErrNoCSR, []string{"no CSR is pending"}},
		{"upload empty", "PUT", "/api/v1/domains/example.com/certificate", nil, 400, ErrNotPEM, []string{"empty"}},
		{"upload not pem", "PUT", "/api/v1/domains/example.com/certificate", []byte("hello, not a certificate"), 400, ErrNotPEM, []string{"not PEM", "openssl x509 -inform der"}},
		{"upload der", "PUT", "/api/v1/domains/example.com/certificate", mustParse(t, goodCert).Raw, 400, ErrNotPEM, []string{"not PEM"}},
		{"upload key only", "PUT", "/api/v1/domains/example.com/certificate", goodKey, 400, ErrNoCertInPEM, []string{"private key but no certificate"}},
		{"upload csr", "PUT", "/api/v1/domains/example.com/certificate", []byte(csr.CSR), 400, ErrNoCertInPEM, []string{"certificate request, not a certificate"}},
		{"upload other pem", "PUT", "/api/v1/domains/example.com/certificate", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{1}}), 400, ErrNoCertInPEM, []string{"X509 CRL but no CERTIFICATE"}},
		{"upload garbage cert", "PUT", "/api/v1/domains/example.com/certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), 400, ErrBadCert, []string{"certificate 1 of 1", "not valid X.509"}},
		{"upload ca first", "PUT", "/api/v1/domains/example.com/certificate", append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), goodCert[:bytes.Index(goodCert, []byte("-----END"))+26]...), 400, ErrBadCert, []string{"server certificate first"}},
		{"upload no key no csr", "PUT", "/api/v1/domains/example.com/certificate", goodCert, 400, ErrNoKey, []string{"no private key", "no pending CSR"}},
		{"upload key mismatch", "PUT", "/api/v1/domains/example.com/certificate", jsonUp(otherCert, goodKey), 400, ErrKeyMismatch, []string{"key does not match the certificate"}},
		{"upload key while csr", "PUT", "/api/v1/domains/csr.example/certificate", jsonUp(fromCSR, goodKey), 409, ErrKeyWithCSR, []string{"discard the CSR first", "upload the certificate without the key"}},
		{"upload inline key while csr", "PUT", "/api/v1/domains/csr.example/certificate", append(append([]byte{}, fromCSR...), goodKey...), 409, ErrKeyWithCSR, []string{"discard the CSR first"}},
		{"upload not for csr", "PUT", "/api/v1/domains/csr.example/certificate", notForCSR, 400, ErrKeyMismatch, []string{"not issued for the pending CSR of csr.example"}},
		{"upload encrypted key", "PUT", "/api/v1/domains/example.com/certificate", jsonUp(goodCert, legacyEnc), 400, ErrEncryptedKey, []string{"password-protected", "openssl pkey -in k.pem -out k-plain.pem"}},
		{"upload encrypted pkcs8", "PUT", "/api/v1/domains/example.com/certificate", jsonUp(goodCert, pkcs8Enc), 400, ErrEncryptedKey, []string{"remove the password"}},
		{"upload key not pem", "PUT", "/api/v1/domains/example.com/certificate", jsonUp(goodCert, []byte("secret")), 400, ErrBadKey, []string{"key is not PEM"}},
		{"upload key is cert", "PUT", "/api/v1/domains/example.com/certificate", jsonUp(goodCert, goodCert), 400, ErrBadKey, []string{"swapped"}},
		{"upload key twice", "PUT", "/api/v1/domains/example.com/certificate", jsonUp(append(append([]byte{}, goodCert...), goodKey...), goodKey), 400, ErrBadKey, []string{"send it once"}},
		{"upload expired", "PUT", "/api/v1/domains/example.com/certificate", jsonUp(expired, expiredKey), 400, ErrExpired, []string{"expired on " + time.Now().Add(-24*time.Hour).UTC().Format("2006-01-02")}},
		{"upload not yet valid", "PUT", "/api/v1/domains/example.com/certificate", jsonUp(future, futureKey), 400, ErrNotYetValid, []string{"not valid yet", "valid from " + time.Now().Add(24*time.Hour).UTC().Format("2006-01-02")}},
		{"upload wrong names", "PUT", "/api/v1/domains/example.com/certificate", jsonUp(wrong, wrongKey), 400, ErrNamesMismatch, []string{"SAN dNSName mra.other.example, other.example", "example.com needs", "mra.example.com"}},
		{"upload bad wildcard", "PUT", "/api/v1/domains/example.com/certificate", jsonUp(badWild, badWildKey), 400, ErrNamesMismatch, []string{"mra*.example.com", "whole left-most label"}},
		{"upload cn only", "PUT", "/api/v1/domains/example.com/certificate", jsonUp(cnOnly, cnOnlyKey), 400, ErrNamesMismatch, []string{"no SAN dNSName at all", "Subject CN mra.example.com, which does not count"}},
		{"upload multi wrong names", "PUT", "/api/v1/domains/multi.example/certificate", jsonUp(wrong, wrongKey), 400, ErrNamesMismatch, []string{"mra.multi.example, expe2.multi.example"}},
		{"upload bad json", "PUT", "/api/v1/domains/example.com/certificate", []byte(`{"certificate": 1}`), 400, ErrBadRequest, []string{"not the JSON expected"}},
		{"upload too large", "PUT", "/api/v1/domains/example.com/certificate", big, 413, ErrTooLarge, []string{"over 1024 KiB"}},
		{"upload unknown domain", "PUT", "/api/v1/domains/nope.example/certificate", goodCert, 404, ErrNotFound, []string{"not added"}},
		{"acme not configured", "POST", "/api/v1/domains/example.com/acme", nil, 501, ErrNoACME, []string{"ACME is not configured", "upload a certificate"}},
		{"wrong method", "PATCH", "/api/v1/domains/example.com", nil, 405, ErrMethod, []string{"PATCH is not allowed", "DELETE or GET"}},
		{"wrong method list", "DELETE", "/api/v1/domains", nil, 405, ErrMethod, []string{"GET or POST"}},
		{"no route", "GET", "/api/v2/things", nil, 404, ErrNoRoute, []string{"no API at /api/v2/things", "/api/v1/domains"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, hdr, body := e.call(t, tt.method, tt.path, "", tt.body)
			var ae APIError
			if err := json.Unmarshal(body, &ae); err != nil {
				t.Fatalf("status %d, body not JSON: %q", st, body)
			}
			if st != tt.status || ae.Status != tt.status || hdr.Get("Content-Type") != "application/json" {
				t.Fatalf("status %d (body %d, %s), want %d: %s", st, ae.Status, hdr.Get("Content-Type"), tt.status, ae.Error)
			}
			for _, w := range tt.want {
				if !strings.Contains(ae.Error, w) {
					t.Errorf("message %q lacks %q", ae.Error, w)
				}
			}
			if tt.status == 405 && hdr.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	// the same through the Go API: each failure has its kind
	for _, tt := range tests {
		if tt.method != "PUT" || tt.kind == ErrTooLarge || tt.kind == ErrBadRequest {
			continue
		}
		var cert, key []byte = tt.body, nil
		var j struct{ Certificate, Key string }
		if json.Unmarshal(tt.body, &j) == nil {
			cert, key = []byte(j.Certificate), []byte(j.Key)
		}
		d := strings.Split(tt.path, "/")[4]
		_, err := e.m.Upload(t.Context(), d, cert, key)
		var de *Error
		if !errors.Is(err, tt.kind) || !errors.As(err, &de) || de.Status != tt.status {
			t.Errorf("%s: Upload error %v (%T), want kind %v and status %d", tt.name, err, err, tt.kind, tt.status)
		}
	}
	if len(e.sni.hosts()) != 0 {
		t.Fatalf("a refused upload installed a certificate: %v", e.sni.hosts())
	}
	assertNoKeys(t, e, [][]byte{goodKey, expiredKey, futureKey, wrongKey, badWildKey, cnOnlyKey})
}

// TestUploadWithKey covers certificates made elsewhere: key as JSON, key inside the PEM body,
// a wildcard, several SNI hosts, and the warnings about Jabber's check.
func TestUploadWithKey(t *testing.T) {
	e := newEnv(t, "", nil)
	ca := newTestCA(t)
	for _, d := range []string{"example.com", "multi.example", "wild.example"} {
		e.ok(t, "POST", "/api/v1/domains", map[string]string{"domain": d}, 201, nil)
	}
	cert, key := ca.issue(t, []string{"mra.example.com", "collab-edge.example.com"}, nil)
	var det Details
	e.ok(t, "PUT", "/api/v1/domains/example.com/certificate", map[string]string{"certificate": string(cert), "key": string(key)}, 200, &det)
	if len(det.Warnings) != 0 || det.KeyType != "ECDSA" || det.KeySize != 256 {
		t.Fatalf("%+v", det)
	}
	if l := handshakeWith(t, e.sni, "mra.example.com", ca.pool()); l.DNSNames[1] != "collab-edge.example.com" {
		t.Fatalf("served %v", l.DNSNames)
	}
	// only one of two hosts named, and no Jabber form: accepted, with warnings; served on both
	cert, key = ca.issue(t, []string{"mra.multi.example"}, func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })
	e.ok(t, "PUT", "/api/v1/domains/multi.example/certificate", append(cert, key...), 200, &det)
	joined := strings.Join(det.Warnings, "\n")
	for _, w := range []string{"does not name the SNI host expe2.multi.example", "Jabber will refuse", "Client Authentication"} {
		if !strings.Contains(joined, w) {
			t.Errorf("warnings %q lack %q", joined, w)
		}
	}
	if e.sni.leaf("expe2.multi.example") == nil || e.sni.leaf("mra.multi.example") == nil {
		t.Fatalf("installed on %v", e.sni.hosts())
	}
	// a wildcard as the whole left-most label covers the SNI host
	cert, key = ca.issue(t, []string{"*.wild.example", "wild.example"}, nil)
	e.ok(t, "PUT", "/api/v1/domains/wild.example/certificate", map[string]string{"certificate": string(cert), "key": string(key)}, 200, &det)
	handshakeWith(t, e.sni, "mra.wild.example", ca.pool())
	// a replacement is served at once
	cert2, key2 := ca.issue(t, []string{"mra.example.com", "example.com"}, nil)
	e.ok(t, "PUT", "/api/v1/domains/example.com/certificate", map[string]string{"certificate": string(cert2), "key": string(key2)}, 200, &det)
	if l := handshakeWith(t, e.sni, "mra.example.com", ca.pool()); l.SerialNumber.Cmp(mustParse(t, cert2).SerialNumber) != 0 {
		t.Fatal("the replacement is not served")
	}
	assertNoKeys(t, e, [][]byte{key, key2})
}

func TestAPIACME(t *testing.T) {
	acme := &stubACME{enabled: map[string]bool{}, stored: map[string]*tls.Certificate{}}
	e := newEnv(t, "", acme)
	ca := newTestCA(t)
	e.ok(t, "POST", "/api/v1/domains", map[string]string{"domain": "example.com"}, 201, nil)
	cert, key := ca.issue(t, []string{"mra.example.com", "example.com"}, nil)
	e.ok(t, "PUT", "/api/v1/domains/example.com/certificate", map[string]string{"certificate": string(cert), "key": string(key)}, 200, nil)
	if names := e.m.ACMENames("example.com"); !slices.Equal(names, []string{"mra.example.com", "example.com"}) {
		t.Fatalf("ACME names %v", names)
	}

	var st ACMEStatus
	e.ok(t, "POST", "/api/v1/domains/example.com/acme", nil, http.StatusAccepted, &st)
	if st.State != "pending" || !acme.on("example.com") {
		t.Fatalf("enable: %+v", st)
	}
	// until ACME delivers, the uploaded certificate is served
	if l := e.sni.leaf("mra.example.com"); l == nil || l.Issuer.CommonName != "test CA" {
		t.Fatal("uploaded certificate not served while ACME is pending")
	}
	other := newTestCA(t)
	acmeCert, acmeKey := other.issue(t, []string{"mra.example.com", "example.com"}, nil)
	tc, err := tls.X509KeyPair(acmeCert, acmeKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.DeployACME("example.com", &tc); err != nil {
		t.Fatal(err)
	}
	handshakeWith(t, e.sni, "mra.example.com", other.pool())
	var in Info
	e.ok(t, "GET", "/api/v1/domains/example.com", nil, 200, &in)
	if in.Source != SourceACME || in.ACME.State != "pending" || in.Issuer != "CN=test CA" {
		t.Fatalf("%+v", in)
	}
	// A restart: Load resumes ACME, which hands over its stored certificate from within
	// Enable (no deadlock), and that certificate is served.
	acme.mu.Lock()
	acme.stored["example.com"] = &tc
	acme.mu.Unlock()
	e2 := newEnv(t, e.dir, acme)
	handshakeWith(t, e2.sni, "mra.example.com", other.pool())
	e2.ok(t, "GET", "/api/v1/domains/example.com/acme", nil, 200, &st)
	if st.State != "valid" {
		t.Fatalf("status after a restart: %+v", st)
	}
	// off: the upload is served again
	e2.ok(t, "DELETE", "/api/v1/domains/example.com/acme", nil, 200, &st)
	if st.State != ACMEOff || acme.on("example.com") {
		t.Fatalf("disable: %+v", st)
	}
	handshakeWith(t, e2.sni, "mra.example.com", ca.pool())
	if err := e2.m.DeployACME("example.com", &tc); err == nil {
		t.Fatal("DeployACME accepted a certificate while ACME is off")
	}
	// on again: the stored certificate comes back within Enable
	e2.ok(t, "POST", "/api/v1/domains/example.com/acme", nil, http.StatusAccepted, &st)
	handshakeWith(t, e2.sni, "mra.example.com", other.pool())
	e2.ok(t, "DELETE", "/api/v1/domains/example.com/acme", nil, 200, nil)
	acme.mu.Lock()
	acme.fail = errors.New("no ACME account")
	acme.mu.Unlock()
	code, _, body := e2.call(t, "POST", "/api/v1/domains/example.com/acme", "", nil)
	if code != http.StatusBadGateway || !strings.Contains(string(body), "no ACME account") {
		t.Fatalf("enable with a failing ACME: %d %s", code, body)
	}
	e2.ok(t, "GET", "/api/v1/domains/example.com", nil, 200, &in)
	if in.ACME.State != ACMEOff || in.Source != SourceUpload {
		t.Fatalf("after a failed enable: %+v", in)
	}
	// delete turns ACME off
	acme.mu.Lock()
	acme.fail = nil
	acme.mu.Unlock()
	e2.ok(t, "POST", "/api/v1/domains/example.com/acme", nil, http.StatusAccepted, nil)
	e2.ok(t, "DELETE", "/api/v1/domains/example.com", nil, 200, nil)
	if acme.on("example.com") {
		t.Fatal("delete left ACME on")
	}
	assertNoKeys(t, e, [][]byte{key, acmeKey})
	assertNoKeys(t, e2, [][]byte{key, acmeKey})
}

// TestJSONProblemQuotesNoBody: what the API says of a bad JSON body never repeats the body's
// text, which may be a private key; a field name like a typo is still named.
func TestJSONProblemQuotesNoBody(t *testing.T) {
	const secret = "MIGHAgEAMBMGByqGSM49AgEGCCqG"
	for _, body := range []string{`{"` + secret + `": 1}`, `{"domain": ` + secret + `}`, `{"domain": "x"` + secret, `[` + secret} {
		var v struct {
			Domain string `json:"domain"`
		}
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		err := dec.Decode(&v)
		if err == nil {
			t.Fatalf("%s decoded", body)
		}
		if msg := jsonProblem(err); strings.Contains(msg, secret[:8]) || strings.Contains(msg, secret[len(secret)-8:]) {
			t.Errorf("%s: %q repeats the body", body, msg)
		}
	}
	dec := json.NewDecoder(strings.NewReader(`{"domian": "x"}`))
	dec.DisallowUnknownFields()
	var v struct {
		Domain string `json:"domain"`
	}
	if msg := jsonProblem(dec.Decode(&v)); msg != `unknown field "domian"` {
		t.Errorf("typo: %q", msg)
	}
}
