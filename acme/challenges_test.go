package acme

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/libdns/libdns"
	acmeproto "github.com/mholt/acmez/v3/acme"
)

func TestChallengesTXT(t *testing.T) {
	var c Challenges // the zero value is ready
	ctx := context.Background()
	add := []libdns.Record{
		libdns.RR{Name: "_acme-challenge.mra", Type: "TXT", Data: "one"},
		libdns.RR{Name: "_acme-challenge.mra", Type: "TXT", Data: "two"},
		libdns.RR{Name: "www", Type: "A", Data: "127.0.0.1"}, // not a challenge record: ignored
	}
	got, err := c.AppendRecords(ctx, "Example.COM.", add)
	if err != nil || len(got) != 2 {
		t.Fatalf("AppendRecords: %v, %v", got, err)
	}
	for _, name := range []string{"_acme-challenge.mra.example.com", "_ACME-challenge.mra.example.com."} {
		if v := c.TXT(name); !slices.Equal(v, []string{"one", "two"}) {
			t.Errorf("TXT(%q) = %v", name, v)
		}
	}
	if recs, _ := c.GetRecords(ctx, "example.com."); len(recs) != 2 || recs[0].RR().Name != "_acme-challenge.mra" {
		t.Errorf("GetRecords: %v", recs)
	}
	if recs, _ := c.GetRecords(ctx, "other.com."); len(recs) != 0 {
		t.Errorf("GetRecords of another zone: %v", recs)
	}
	del, _ := c.DeleteRecords(ctx, "example.com.", []libdns.Record{libdns.TXT{Name: "_acme-challenge.mra", Text: "one"}})
	if len(del) != 1 || !slices.Equal(c.TXT("_acme-challenge.mra.example.com"), []string{"two"}) {
		t.Errorf("after deleting one: deleted %v, left %v", del, c.TXT("_acme-challenge.mra.example.com"))
	}
	_, _ = c.DeleteRecords(ctx, "example.com.", []libdns.Record{libdns.RR{Name: "_acme-challenge.mra"}}) // any value
	if v := c.TXT("_acme-challenge.mra.example.com"); v != nil {
		t.Errorf("after deleting all: %v", v)
	}
}

func TestChallengesALPN(t *testing.T) {
	var c Challenges
	s := &alpnSolver{c: &c}
	chal := acmeproto.Challenge{
		Type:             acmeproto.ChallengeTypeTLSALPN01,
		Token:            "tok",
		KeyAuthorization: "tok.thumb",
		Identifier:       acmeproto.Identifier{Type: "dns", Value: "mra.example.com"},
	}
	if err := s.Present(context.Background(), chal); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		server string
		protos []string
		want   bool
	}{
		{"validation handshake", "mra.example.com", []string{ALPNProto}, true},
		{"case-insensitive", "MRA.Example.com", []string{ALPNProto}, true},
		{"a browser", "mra.example.com", []string{"h2", "http/1.1"}, false},
		{"acme-tls/1 among others", "mra.example.com", []string{"http/1.1", ALPNProto}, false},
		{"no pending challenge", "other.example.com", []string{ALPNProto}, false},
		{"no SNI", "", []string{ALPNProto}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, ok := c.ALPNCertificate(&tls.ClientHelloInfo{ServerName: tc.server, SupportedProtos: tc.protos})
			if ok != tc.want || (ok && cert == nil) {
				t.Fatalf("ALPNCertificate = %v, %v; want %v", cert != nil, ok, tc.want)
			}
			if ok && !slices.Equal(cert.Leaf.DNSNames, []string{"mra.example.com"}) {
				t.Errorf("validation certificate names %v", cert.Leaf.DNSNames)
			}
		})
	}
	if err := s.CleanUp(context.Background(), chal); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.ALPNCertificate(&tls.ClientHelloInfo{ServerName: "mra.example.com", SupportedProtos: []string{ALPNProto}}); ok {
		t.Error("certificate left after CleanUp")
	}
}

func TestChallengesHTTP(t *testing.T) {
	var c Challenges
	s := httpSolver{c: &c}
	chal := acmeproto.Challenge{Token: "tok", KeyAuthorization: "tok.thumb",
		Identifier: acmeproto.Identifier{Type: "dns", Value: "example.com"}}
	_ = s.Present(context.Background(), chal)
	for _, tc := range []struct {
		name, host, path string
		want             bool
	}{
		{"pending token", "example.com", "/.well-known/acme-challenge/tok", true},
		{"host with port", "Example.com:80", "/.well-known/acme-challenge/tok", true},
		{"other host", "evil.example", "/.well-known/acme-challenge/tok", false},
		{"unknown token", "example.com", "/.well-known/acme-challenge/nope", false},
		{"other path", "example.com", "/", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://"+tc.host+tc.path, nil)
			w := httptest.NewRecorder()
			if got := c.ServeHTTPChallenge(w, r); got != tc.want {
				t.Fatalf("ServeHTTPChallenge = %v", got)
			}
			if tc.want && w.Body.String() != "tok.thumb" {
				t.Errorf("body %q", w.Body.String())
			}
		})
	}
	_ = s.CleanUp(context.Background(), chal)
	r := httptest.NewRequest(http.MethodGet, "http://example.com/.well-known/acme-challenge/tok", nil)
	if c.ServeHTTPChallenge(httptest.NewRecorder(), r) {
		t.Error("token served after CleanUp")
	}
}
