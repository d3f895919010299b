package acme

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/libdns/libdns"
	"github.com/mholt/acmez/v3"
	acmeproto "github.com/mholt/acmez/v3/acme"
)

// ALPNProto is the ALPN protocol of a TLS-ALPN-01 validation handshake (RFC 8737). A listener
// that answers TLS-ALPN-01 challenges lists it in tls.Config.NextProtos.
const ALPNProto = acmez.ACMETLS1Protocol

// httpChallengePrefix is the path under which HTTP-01 key authorizations are served (RFC 8555 §8.3).
const httpChallengePrefix = "/.well-known/acme-challenge/"

// Challenges holds the answers to pending ACME challenges, for the servers that give them: the
// DNS server's TXT records (DNS-01), the HTTPS listener's validation certificates (TLS-ALPN-01)
// and the HTTP listener's key authorizations (HTTP-01). A Manager writes into it while an order
// is open and removes each answer when its challenge is over.
//
// The zero Challenges is empty and ready for use; all methods are safe for concurrent use. It
// implements libdns.RecordGetter, RecordAppender and RecordDeleter, so certmagic's DNS01Solver
// publishes TXT records into it as if it were a DNS provider.
type Challenges struct {
	mu   sync.RWMutex
	txt  map[string][]string         // owner name (lower case, no trailing dot) -> values
	alpn map[string]*tls.Certificate // identifier (lower case) -> validation certificate
	http map[string]httpAnswer       // token -> answer

	txtVersion atomic.Uint64 // counts the changes to txt
}

type httpAnswer struct {
	host    string // the identifier the token was issued for, lower case
	keyAuth string
}

// canonName lower-cases an owner name and drops one trailing dot.
func canonName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// TXT returns the TXT values published for fqdn (with or without a trailing dot, any case), or
// nil. The DNS server adds them to its answer for fqdn's TXT question.
func (c *Challenges) TXT(fqdn string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.txt[canonName(fqdn)])
}

// TXTVersion changes whenever a TXT record is added or removed, so that a cache of answers built
// from TXT knows when to rebuild. Read it before reading TXT: an entry built after reading
// version v is current as long as TXTVersion still returns v.
func (c *Challenges) TXTVersion() uint64 { return c.txtVersion.Load() }

// ALPNCertificate returns the TLS-ALPN-01 validation certificate when hello is a validation
// handshake for a name with a pending challenge: the client offers exactly the "acme-tls/1"
// protocol and names the identifier in SNI. Otherwise it returns false and the listener goes on
// to choose its usual certificate. Meant to be the first thing tls.Config.GetCertificate asks.
func (c *Challenges) ALPNCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, bool) {
	if len(hello.SupportedProtos) != 1 || hello.SupportedProtos[0] != ALPNProto || hello.ServerName == "" {
		return nil, false
	}
	c.mu.RLock()
	cert := c.alpn[canonName(hello.ServerName)]
	c.mu.RUnlock()
	return cert, cert != nil
}

// ServeHTTPChallenge answers an HTTP-01 validation request (GET /.well-known/acme-challenge/<token>
// for a pending token and the host it was issued for) and reports whether it did; when it returns
// false it has written nothing and the caller handles the request as usual.
func (c *Challenges) ServeHTTPChallenge(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, httpChallengePrefix) {
		return false
	}
	token := strings.TrimPrefix(r.URL.Path, httpChallengePrefix)
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	c.mu.RLock()
	a, ok := c.http[token]
	c.mu.RUnlock()
	if !ok || a.host != canonName(host) {
		return false
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(a.keyAuth))
	return true
}

// GetRecords returns the TXT records published under zone (libdns.RecordGetter).
func (c *Challenges) GetRecords(_ context.Context, zone string) ([]libdns.Record, error) {
	z := canonName(zone)
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []libdns.Record
	for name, values := range c.txt {
		if name != z && !strings.HasSuffix(name, "."+z) {
			continue
		}
		for _, v := range values {
			out = append(out, libdns.TXT{Name: libdns.RelativeName(name, z), Text: v})
		}
	}
	return out, nil
}

// AppendRecords publishes TXT records in zone (libdns.RecordAppender); records of other types
// are ignored, as the ACME challenges need none.
func (c *Challenges) AppendRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	var added []libdns.Record
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range recs {
		rr := r.RR()
		if rr.Type != "TXT" {
			continue
		}
		name := canonName(libdns.AbsoluteName(rr.Name, zone))
		if c.txt == nil {
			c.txt = make(map[string][]string)
		}
		c.txt[name] = append(c.txt[name], rr.Data)
		c.txtVersion.Add(1)
		added = append(added, libdns.TXT{Name: rr.Name, TTL: rr.TTL, Text: rr.Data})
	}
	return added, nil
}

// DeleteRecords removes TXT records from zone (libdns.RecordDeleter). An empty value deletes every
// TXT record of the name.
func (c *Challenges) DeleteRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	var deleted []libdns.Record
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range recs {
		rr := r.RR()
		if rr.Type != "TXT" && rr.Type != "" {
			continue
		}
		name := canonName(libdns.AbsoluteName(rr.Name, zone))
		values := c.txt[name]
		kept := values[:0]
		for _, v := range values {
			if rr.Data == "" || v == rr.Data {
				deleted = append(deleted, libdns.TXT{Name: rr.Name, TTL: rr.TTL, Text: v})
				continue
			}
			kept = append(kept, v)
		}
		if len(kept) != len(values) {
			c.txtVersion.Add(1)
		}
		if len(kept) == 0 {
			delete(c.txt, name)
		} else {
			c.txt[name] = kept
		}
	}
	return deleted, nil
}

func (c *Challenges) putALPN(identifier string, cert *tls.Certificate) {
	c.mu.Lock()
	if c.alpn == nil {
		c.alpn = make(map[string]*tls.Certificate)
	}
	c.alpn[canonName(identifier)] = cert
	c.mu.Unlock()
}

// dropALPN removes identifier's certificate if it is still cert (a newer challenge may have
// replaced it).
func (c *Challenges) dropALPN(identifier string, cert *tls.Certificate) {
	c.mu.Lock()
	if c.alpn[canonName(identifier)] == cert {
		delete(c.alpn, canonName(identifier))
	}
	c.mu.Unlock()
}

func (c *Challenges) putHTTP(token, identifier, keyAuth string) {
	c.mu.Lock()
	if c.http == nil {
		c.http = make(map[string]httpAnswer)
	}
	c.http[token] = httpAnswer{host: canonName(identifier), keyAuth: keyAuth}
	c.mu.Unlock()
}

func (c *Challenges) dropHTTP(token string) {
	c.mu.Lock()
	delete(c.http, token)
	c.mu.Unlock()
}

// alpnSolver solves tls-alpn-01 by putting the validation certificate into Challenges, where the
// application's own HTTPS listener finds it; it never opens a socket.
type alpnSolver struct {
	c       *Challenges
	mu      sync.Mutex
	byToken map[string]*tls.Certificate // what Present put in, so CleanUp removes only that
}

func (s *alpnSolver) Present(_ context.Context, chal acmeproto.Challenge) error {
	cert, err := acmez.TLSALPN01ChallengeCert(chal)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.byToken == nil {
		s.byToken = make(map[string]*tls.Certificate)
	}
	s.byToken[chal.Token] = cert
	s.mu.Unlock()
	s.c.putALPN(chal.Identifier.Value, cert)
	return nil
}

func (s *alpnSolver) CleanUp(_ context.Context, chal acmeproto.Challenge) error {
	s.mu.Lock()
	cert := s.byToken[chal.Token]
	delete(s.byToken, chal.Token)
	s.mu.Unlock()
	if cert != nil {
		s.c.dropALPN(chal.Identifier.Value, cert)
	}
	return nil
}

// httpSolver solves http-01 by putting the key authorization into Challenges, where the
// application's HTTP listener serves it (ServeHTTPChallenge).
type httpSolver struct{ c *Challenges }

func (s httpSolver) Present(_ context.Context, chal acmeproto.Challenge) error {
	s.c.putHTTP(chal.Token, chal.Identifier.Value, chal.KeyAuthorization)
	return nil
}

func (s httpSolver) CleanUp(_ context.Context, chal acmeproto.Challenge) error {
	s.c.dropHTTP(chal.Token)
	return nil
}
