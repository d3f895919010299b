package certlint

import (
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

var (
	bothEKU    = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	serverOnly = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	clientOnly = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
)

// expect is what a test wants of one rule: its Pass, and words its Reason must hold.
type expect struct {
	pass bool
	has  []string
}

func ok(has ...string) expect  { return expect{pass: true, has: has} }
func bad(has ...string) expect { return expect{pass: false, has: has} }

// chained issues s under the test intermediate and returns leaf, intermediate.
func chained(s spec) func(testing.TB, testPKI) []*x509.Certificate {
	return func(t testing.TB, p testPKI) []*x509.Certificate {
		s := s
		s.parent = p.inter
		return []*x509.Certificate{issue(t, s).cert, p.inter.cert}
	}
}

// selfSigned issues s self-signed, alone in the chain.
func selfSigned(s spec) func(testing.TB, testPKI) []*x509.Certificate {
	return func(t testing.TB, p testPKI) []*x509.Certificate {
		return []*x509.Certificate{issue(t, s).cert}
	}
}

func TestLint(t *testing.T) {
	p := newPKI(t)
	good := spec{cn: "mra.example.com", eku: bothEKU,
		dns: []string{"mra.example.com", "example.com", "collab-edge.b.com", "fed.com", "chat.example.com"}}
	with := func(f func(*spec)) spec { s := good; f(&s); return s }
	day := 24 * time.Hour

	tests := []struct {
		name   string
		chain  func(testing.TB, testPKI) []*x509.Certificate
		opts   Options
		want   map[string]expect
		absent []string // rules that must not be reported
	}{
		{
			name:  "good expressway-e certificate",
			chain: chained(good),
			opts: Options{Domains: []string{"example.com", "B.com."}, XMPPDomains: []string{"fed.com"},
				ChatAliases: []string{"chat.example.com"}, Host: "mra.example.com"},
			want: map[string]expect{
				RuleSAN: ok("registration domain example.com as dNSName example.com",
					"registration domain b.com as dNSName collab-edge.b.com (CollabEdgeDNS form)",
					"XMPP federation domain fed.com", "chat node alias chat.example.com", "host mra.example.com"),
				RuleCollabEdge: ok("collab-edge.b.com present", "not used for example.com: plain domains are accepted too"),
				RuleEKU:        ok("serverAuth and clientAuth"),
				RuleWildcard:   ok("no wildcard"),
				RuleKey:        ok("RSA 2048 bits (RSA recommended)"),
				RuleValidity:   ok("valid from 2026-05-31 until 2027-06-01", "365 days left"),
				RuleChain:      ok("verifies to trusted root CN=Test Root CA through CN=Test Issuing CA"),
			},
		},
		{
			name:  "registration domain in neither form",
			chain: chained(good),
			opts:  Options{Domains: []string{"example.com", "c.com"}},
			want: map[string]expect{
				RuleSAN:        bad("registration domain c.com missing: neither c.com nor collab-edge.c.com is a SAN dNSName", "found registration domain example.com"),
				RuleCollabEdge: ok("neither form for c.com (see san)"),
			},
		},
		{
			name:  "domain only in the CN",
			chain: chained(spec{cn: "example.com", eku: bothEKU, dns: []string{"mra.example.com"}}),
			opts:  Options{Domains: []string{"example.com"}},
			want: map[string]expect{
				RuleSAN: bad("registration domain example.com missing", "only in the Subject CN (example.com)"),
			},
		},
		{
			name:  "CN-only certificate, no names asked",
			chain: chained(spec{cn: "mra.example.com", eku: bothEKU}),
			want:  map[string]expect{RuleSAN: bad("no SAN dNSName (only Subject CN mra.example.com): Expressway checks SAN, not CN")},
		},
		{
			name:  "CN-only host on expressway-e",
			chain: chained(spec{cn: "mra.example.com", eku: bothEKU, dns: []string{"example.com"}}),
			opts:  Options{Host: "mra.example.com"},
			want:  map[string]expect{RuleSAN: bad("host mra.example.com is not a SAN dNSName", "Expressway checks SAN, not CN")},
		},
		{
			name:  "no names asked, SANs listed",
			chain: chained(good),
			want: map[string]expect{
				RuleSAN:        ok("no names given to check", "mra.example.com, example.com"),
				RuleCollabEdge: ok("collab-edge.b.com present"),
			},
		},
		{
			name:  "collab-edge form not used",
			chain: chained(spec{cn: "mra.example.com", eku: bothEKU, dns: []string{"mra.example.com"}}),
			want:  map[string]expect{RuleCollabEdge: ok("not used: plain domains are accepted too")},
		},
		{
			name:  "federation domain and chat alias missing",
			chain: chained(spec{eku: bothEKU, dns: []string{"*.example.com", "example.com"}}),
			opts:  Options{XMPPDomains: []string{"fed.com"}, ChatAliases: []string{"chat.example.com"}},
			want: map[string]expect{
				RuleSAN: bad("XMPP federation domain fed.com is not a SAN dNSName",
					"chat node alias chat.example.com is not a SAN dNSName; the wildcard SAN *.example.com does not count"),
			},
		},
		{
			name:  "domain as SRVName otherName",
			chain: chained(spec{eku: bothEKU, dns: []string{"mra.example.com"}, others: []otherName{srvName("_collab-edge._tls.example.com")}}),
			opts:  Options{Domains: []string{"example.com"}},
			want:  map[string]expect{RuleSAN: ok("registration domain example.com as SRVName _collab-edge._tls.example.com")},
		},
		{
			name:   "expressway-c security profiles",
			chain:  chained(spec{eku: bothEKU, dns: []string{"expc.example.com", "7800-sip.example.com"}}),
			opts:   Options{Role: RoleExpresswayC, SecurityProfiles: []string{"7800-SIP.example.com", "8800-sip.example.com"}},
			want:   map[string]expect{RuleSAN: bad("phone security profile 8800-sip.example.com is not a SAN dNSName", "found phone security profile 7800-sip.example.com")},
			absent: []string{RuleCollabEdge},
		},

		// EKU
		{
			name:  "no clientAuth on expressway-e",
			chain: chained(with(func(s *spec) { s.eku = serverOnly })),
			want:  map[string]expect{RuleEKU: bad("no clientAuth EKU", "once UC features are on")},
		},
		{
			name:  "no serverAuth on expressway-c",
			chain: chained(with(func(s *spec) { s.eku = clientOnly })),
			opts:  Options{Role: RoleExpresswayC},
			want:  map[string]expect{RuleEKU: bad("no serverAuth EKU")},
		},
		{
			name:  "no EKU extension",
			chain: chained(with(func(s *spec) { s.eku = nil })),
			want:  map[string]expect{RuleEKU: ok("no extended key usage extension")},
		},
		{
			name:   "http role needs serverAuth only",
			chain:  chained(with(func(s *spec) { s.eku = serverOnly })),
			opts:   Options{Role: RoleHTTP},
			want:   map[string]expect{RuleEKU: ok("serverAuth"), RuleSAN: ok("no host given")},
			absent: []string{RuleCollabEdge},
		},
		{
			name:  "http role without serverAuth",
			chain: chained(with(func(s *spec) { s.eku = clientOnly })),
			opts:  Options{Role: RoleHTTP},
			want:  map[string]expect{RuleEKU: bad("no serverAuth EKU")},
		},

		// Wildcards
		{
			name:  "wildcard well placed, http",
			chain: chained(spec{dns: []string{"*.example.com"}, eku: serverOnly}),
			opts:  Options{Role: RoleHTTP, Host: "mra.example.com"},
			want:  map[string]expect{RuleWildcard: ok("*.example.com well placed"), RuleSAN: ok("host mra.example.com by SAN dNSName *.example.com")},
		},
		{
			name:  "wildcard covers one label only",
			chain: chained(spec{dns: []string{"*.example.com"}, eku: serverOnly}),
			opts:  Options{Role: RoleHTTP, Host: "a.b.example.com"},
			want:  map[string]expect{RuleSAN: bad("host a.b.example.com is not covered under Jabber's HTTP rules", "SAN dNSName *.example.com")},
		},
		{
			name:  "wildcard inside a label",
			chain: chained(spec{dns: []string{"f*.example.com"}, eku: serverOnly}),
			opts:  Options{Role: RoleHTTP, Host: "foo.example.com"},
			want: map[string]expect{
				RuleWildcard: bad("SAN dNSName f*.example.com: '*' must be the whole left-most label"),
				RuleSAN:      bad("host foo.example.com is not covered"),
			},
		},
		{
			name:  "two wildcards",
			chain: chained(spec{dns: []string{"*.*.example.com"}, eku: serverOnly}),
			opts:  Options{Role: RoleXMPP},
			want:  map[string]expect{RuleWildcard: bad("*.*.example.com: only one '*' is allowed")},
		},
		{
			name:  "wildcard not left-most",
			chain: chained(spec{dns: []string{"a.*.example.com"}, eku: serverOnly}),
			opts:  Options{Role: RoleHTTP},
			want:  map[string]expect{RuleWildcard: bad("a.*.example.com: '*' is allowed only in the left-most label")},
		},
		{
			name:  "wildcard over a top-level domain",
			chain: chained(spec{dns: []string{"*.com"}, eku: serverOnly}),
			opts:  Options{Role: RoleHTTP},
			want:  map[string]expect{RuleWildcard: bad("*.com: a wildcard needs at least two labels after it")},
		},
		{
			name:  "wildcard in the CN",
			chain: chained(spec{cn: "*.example.com", dns: []string{"example.com"}, eku: serverOnly}),
			opts:  Options{Role: RoleHTTP},
			want:  map[string]expect{RuleWildcard: ok("*.example.com well placed")},
		},
		{
			name:  "wildcard on expressway-e",
			chain: chained(spec{dns: []string{"*.example.com", "example.com"}, eku: bothEKU}),
			opts:  Options{Domains: []string{"example.com"}},
			want: map[string]expect{
				RuleWildcard: bad("wildcard *.example.com: Expressway-E does not support wildcard certificates for MRA"),
				RuleSAN:      ok("registration domain example.com as dNSName example.com"),
			},
		},
		{
			name:  "wildcard on expressway-c",
			chain: chained(spec{dns: []string{"*.example.com"}, eku: bothEKU}),
			opts:  Options{Role: RoleExpresswayC},
			want:  map[string]expect{RuleWildcard: bad("wildcard *.example.com: Cisco does not support wildcard certificates on Expressway for MRA")},
		},
		{
			name:  "misplaced wildcard on expressway-e",
			chain: chained(spec{dns: []string{"f*.example.com"}, eku: bothEKU}),
			want:  map[string]expect{RuleWildcard: bad("does not support wildcard", "besides, SAN dNSName f*.example.com: '*' must be the whole left-most label")},
		},

		// Keys
		{name: "RSA 1024", chain: chained(with(func(s *spec) { s.key = "rsa1024" })),
			want: map[string]expect{RuleKey: bad("RSA 1024 bits is too short: use at least 2048")}},
		{name: "ECDSA P-256", chain: chained(with(func(s *spec) { s.key = "p256" })),
			want: map[string]expect{RuleKey: ok("ECDSA P-256", "Expressway recommends RSA")}},
		{name: "ECDSA P-384", chain: chained(with(func(s *spec) { s.key = "p384" })),
			want: map[string]expect{RuleKey: ok("ECDSA P-384", "Expressway recommends RSA")}},
		{name: "ECDSA P-521", chain: chained(with(func(s *spec) { s.key = "p521" })),
			want: map[string]expect{RuleKey: bad("ECDSA P-521 is not supported")}},
		{name: "Ed25519", chain: chained(with(func(s *spec) { s.key = "ed25519" })),
			want: map[string]expect{RuleKey: bad("Ed25519 is not supported")}},

		// Validity
		{
			name:  "expired",
			chain: chained(with(func(s *spec) { s.notBefore, s.notAfter = testNow.Add(-400*day), testNow.Add(-35*day) })),
			want: map[string]expect{
				RuleValidity: bad("the certificate expired on 2026-04-27, 35 days ago"),
				RuleChain:    bad("does not verify at 2026-06-01: CN=mra.example.com is outside its validity period", "otherwise verifies to trusted root CN=Test Root CA"),
			},
		},
		{
			name:  "not yet valid",
			chain: chained(with(func(s *spec) { s.notBefore = testNow.Add(3 * day) })),
			want:  map[string]expect{RuleValidity: bad("the certificate is not valid before 2026-06-04 (now 2026-06-01)")},
		},
		{
			name:  "expires within 30 days",
			chain: chained(with(func(s *spec) { s.notAfter = testNow.Add(10*day + time.Hour) })),
			want:  map[string]expect{RuleValidity: ok("expires on 2026-06-11, in 10 days: renew it soon"), RuleChain: ok()},
		},
		{
			name: "intermediate first",
			chain: func(t testing.TB, p testPKI) []*x509.Certificate {
				c := chained(spec{})(t, p)
				return []*x509.Certificate{c[1], c[0]}
			},
			want: map[string]expect{RuleChain: bad("starts with a CA certificate", "put the server certificate first")},
		},
		{
			name: "expired intermediate",
			chain: func(t testing.TB, p testPKI) []*x509.Certificate {
				inter := issue(t, spec{cn: "Old Issuing CA", ca: true, keyName: "old", parent: p.root,
					notBefore: testNow.Add(-800 * day), notAfter: testNow.Add(-day)})
				leaf := issue(t, with(func(s *spec) { s.parent = inter; s.notBefore = testNow.Add(-30 * day) }))
				return []*x509.Certificate{leaf.cert, inter.cert}
			},
			want: map[string]expect{
				RuleValidity: bad("chain certificate 2 (CN=Old Issuing CA) expired on 2026-05-31, 1 day ago"),
				RuleChain:    bad("CN=Old Issuing CA is outside its validity period"),
			},
		},

		// Chain
		{
			name:  "self-signed",
			chain: selfSigned(good),
			want:  map[string]expect{RuleChain: bad("unknown authority: the certificate is self-signed (CN=mra.example.com) and not a trusted root")},
		},
		{
			name: "self-signed and trusted",
			chain: func(t testing.TB, p testPKI) []*x509.Certificate {
				return []*x509.Certificate{p.root.cert}
			},
			want: map[string]expect{RuleChain: ok("the certificate (CN=Test Root CA) is itself a trusted root")},
		},
		{
			name: "intermediate missing from the file",
			chain: func(t testing.TB, p testPKI) []*x509.Certificate {
				return chained(good)(t, p)[:1]
			},
			want: map[string]expect{RuleChain: bad("unknown authority: CN=mra.example.com was issued by \"Test Issuing CA\"", "append the intermediate")},
		},
		{
			name:  "expired and self-signed",
			chain: selfSigned(with(func(s *spec) { s.notAfter = testNow.Add(-day) })),
			want:  map[string]expect{RuleChain: bad("outside its validity period", "besides, unknown authority: the certificate is self-signed")},
		},
		{
			name: "issuer not a CA",
			chain: func(t testing.TB, p testPKI) []*x509.Certificate {
				mid := issue(t, spec{cn: "Not A CA", keyName: "notca", parent: p.root})
				leaf := issue(t, with(func(s *spec) { s.parent = mid }))
				return []*x509.Certificate{leaf.cert, mid.cert}
			},
			want: map[string]expect{RuleChain: bad("CN=Not A CA in the file issued CN=mra.example.com but is not a CA")},
		},

		// Jabber's identity rules (http, xmpp)
		{
			name:  "xmpp host by xmppAddr",
			chain: chained(spec{cn: "other.example.net", eku: serverOnly, others: []otherName{xmppAddr("Example.com")}}),
			opts:  Options{Role: RoleXMPP, Host: "example.com"},
			want:  map[string]expect{RuleSAN: ok("host example.com by SAN xmppAddr Example.com")},
		},
		{
			name:  "xmpp host by SRVName",
			chain: chained(spec{eku: serverOnly, others: []otherName{srvName("_xmpp-client.example.com")}}),
			opts:  Options{Role: RoleXMPP, Host: "example.com"},
			want:  map[string]expect{RuleSAN: ok("host example.com by SAN SRVName _xmpp-client.example.com")},
		},
		{
			name:  "xmpp host by dNSName after otherNames",
			chain: chained(spec{eku: serverOnly, dns: []string{"example.com"}, others: []otherName{xmppAddr("other.com")}}),
			opts:  Options{Role: RoleXMPP, Host: "example.com"},
			want:  map[string]expect{RuleSAN: ok("host example.com by SAN dNSName example.com")},
		},
		{
			name:  "xmpp host by CN",
			chain: chained(spec{cn: "example.com", eku: serverOnly}),
			opts:  Options{Role: RoleXMPP, Host: "example.com"},
			want:  map[string]expect{RuleSAN: ok("host example.com only by Subject CN example.com", "add it as a SAN dNSName")},
		},
		{
			name:  "xmpp host not covered",
			chain: chained(spec{cn: "a.example.com", eku: serverOnly, dns: []string{"a.example.com"}, others: []otherName{xmppAddr("other.com")}}),
			opts:  Options{Role: RoleXMPP, Host: "example.com"},
			want: map[string]expect{RuleSAN: bad("host example.com is not covered under Jabber's XMPP rules: SAN xmppAddr, SAN SRVName, SAN dNSName, then Subject CN",
				"SAN xmppAddr other.com")},
		},
		{
			name:  "http ignores xmppAddr",
			chain: chained(spec{eku: serverOnly, others: []otherName{xmppAddr("example.com")}}),
			opts:  Options{Role: RoleHTTP, Host: "example.com"},
			want:  map[string]expect{RuleSAN: bad("host example.com is not covered under Jabber's HTTP rules: SAN dNSName, then Subject CN")},
		},
		{
			name:  "http host by CN",
			chain: chained(spec{cn: "MRA.example.com", eku: serverOnly}),
			opts:  Options{Role: RoleHTTP, Host: "mra.example.com."},
			want:  map[string]expect{RuleSAN: ok("host mra.example.com only by Subject CN MRA.example.com")},
		},
		{
			name:  "http IP host named by address",
			chain: chained(spec{eku: serverOnly, ips: []net.IP{net.ParseIP("192.0.2.7")}}),
			opts:  Options{Role: RoleHTTP, Host: "192.0.2.7"},
			want:  map[string]expect{RuleSAN: ok("host 192.0.2.7 by SAN iPAddress 192.0.2.7")},
		},
		{
			name:  "http IP host, certificate names an FQDN",
			chain: chained(spec{eku: serverOnly, dns: []string{"mra.example.com"}}),
			opts:  Options{Role: RoleHTTP, Host: "192.0.2.7"},
			want:  map[string]expect{RuleSAN: bad("connect by FQDN, not IP")},
		},
		{
			name:  "jabber edge-domain check passes on collab-edge",
			chain: chained(spec{eku: serverOnly, dns: []string{"mra.example.com", "collab-edge.example.com"}}),
			opts:  Options{Role: RoleHTTP, Domains: []string{"example.com"}, Host: "mra.example.com"},
			want:  map[string]expect{RuleSAN: ok("service domain example.com as dNSName collab-edge.example.com (CollabEdgeDNS form)", "host mra.example.com by SAN dNSName")},
		},
		{
			name:  "jabber edge-domain check ignores wildcards",
			chain: chained(spec{eku: serverOnly, dns: []string{"*.example.com"}}),
			opts:  Options{Role: RoleHTTP, Domains: []string{"example.com"}},
			want: map[string]expect{RuleSAN: bad("Edge domain 'example.com' and corresponding SRVName '_collab-edge._tls.example.com' not found in certificate SAN list",
				"the wildcard SAN *.example.com does not count")},
		},
		{
			name:  "names nothing",
			chain: chained(spec{eku: serverOnly}),
			opts:  Options{Role: RoleHTTP},
			want:  map[string]expect{RuleSAN: bad("names no host")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			if o.Roots == nil {
				o.Roots = p.roots
			}
			o.Now = testNow
			rules := Lint(tt.chain(t, p), o)
			for _, r := range rules {
				t.Logf("%-15s %-5v %s", r.Name, r.Pass, r.Reason)
			}
			got := map[string]Rule{}
			for _, r := range rules {
				if _, dup := got[r.Name]; dup {
					t.Errorf("rule %s reported twice", r.Name)
				}
				got[r.Name] = r
				if r.Reason == "" {
					t.Errorf("rule %s has no reason", r.Name)
				}
			}
			for name, w := range tt.want {
				r, found := got[name]
				if !found {
					t.Errorf("rule %s missing from %v", name, rules)
					continue
				}
				if r.Pass != w.pass {
					t.Errorf("rule %s: Pass = %v, want %v (reason: %s)", name, r.Pass, w.pass, r.Reason)
				}
				for _, h := range w.has {
					if !strings.Contains(r.Reason, h) {
						t.Errorf("rule %s: reason %q lacks %q", name, r.Reason, h)
					}
				}
			}
			for _, name := range tt.absent {
				if _, found := got[name]; found {
					t.Errorf("rule %s reported for role %s", name, o.Role)
				}
			}
		})
	}
}

func TestLintOrderAndDefaults(t *testing.T) {
	p := newPKI(t)
	chain := chained(spec{cn: "mra.example.com", dns: []string{"mra.example.com"}, eku: bothEKU})(t, p)
	want := map[Role][]string{
		"":              {RuleSAN, RuleCollabEdge, RuleEKU, RuleWildcard, RuleKey, RuleValidity, RuleChain},
		RoleExpresswayC: {RuleSAN, RuleEKU, RuleWildcard, RuleKey, RuleValidity, RuleChain},
		RoleHTTP:        {RuleSAN, RuleEKU, RuleWildcard, RuleKey, RuleValidity, RuleChain},
		RoleXMPP:        {RuleSAN, RuleEKU, RuleWildcard, RuleKey, RuleValidity, RuleChain},
	}
	for role, names := range want {
		rules := Lint(chain, Options{Role: role, Roots: p.roots, Now: testNow})
		var got []string
		for _, r := range rules {
			got = append(got, r.Name)
		}
		if strings.Join(got, ",") != strings.Join(names, ",") {
			t.Errorf("role %q: rules %v, want %v", role, got, names)
		}
		if f := Failed(rules); len(f) != 0 {
			t.Errorf("role %q: failed %v: %v", role, f, rules)
		}
	}
	// The zero clock is now: a certificate made around the real time is valid.
	real := issue(t, spec{cn: "x", dns: []string{"x.example.com"}, notBefore: time.Now().Add(-time.Hour), notAfter: time.Now().Add(90 * 24 * time.Hour)})
	for _, r := range Lint([]*x509.Certificate{real.cert}, Options{}) {
		if r.Name == RuleValidity && !r.Pass {
			t.Errorf("zero Now: %s", r.Reason)
		}
	}
}

func TestLintEmptyChain(t *testing.T) {
	for _, chain := range [][]*x509.Certificate{nil, {nil}} {
		rules := Lint(chain, Options{})
		if len(rules) != 1 || rules[0].Pass || rules[0].Name != RuleChain || !strings.Contains(rules[0].Reason, "no certificate") {
			t.Errorf("Lint(%v) = %v", chain, rules)
		}
	}
}

func TestParseRole(t *testing.T) {
	for in, want := range map[string]Role{"": RoleExpresswayE, "Expressway-E": RoleExpresswayE, "expressway-c": RoleExpresswayC, " http ": RoleHTTP, "xmpp": RoleXMPP} {
		if got, err := ParseRole(in); err != nil || got != want {
			t.Errorf("ParseRole(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	_, err := ParseRole("sip")
	if !errors.Is(err, ErrBadRole) || !strings.Contains(err.Error(), "expressway-e, expressway-c, http, xmpp") {
		t.Errorf("ParseRole(sip) error = %v", err)
	}
}
