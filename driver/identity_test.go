package driver

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"net"
	"strings"
	"testing"

	"github.com/edgesim/edgesim/internal/san"
)

func TestMatchName(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"mra.example.com", "mra.example.com", true},
		{"MRA.Example.COM", "mra.example.com", true},
		{"mra.example.com.", "mra.example.com", true},
		{"mra.example.com", "MRA.EXAMPLE.COM.", true},
		{"mra.example.com", "mra2.example.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.Example.com", "A.EXAMPLE.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"f*.example.com", "foo.example.com", false},
		{"*o.example.com", "foo.example.com", false},
		{"a.*.example.com", "a.b.example.com", false},
		{"*.com", "example.com", false},
		{"*", "example", false},
		{"", "", false},
		{"*.", "a.", false},
	}
	for _, tc := range tests {
		if got := san.MatchName(tc.pattern, tc.host); got != tc.want {
			t.Errorf("san.MatchName(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
	}
}

func TestParseOtherNames(t *testing.T) {
	ca := newTestCA(t, "edgesim local CA")
	cert, _ := ca.issue(t, certSpec{CN: "x", DNS: []string{"a.example.com"},
		XMPPAddr: []string{"example.com"}, SRVName: []string{"_xmpp-client.example.com", "_collab-edge._tls.example.com"}})
	on := parseOtherNames(cert)
	if len(on.XMPPAddr) != 1 || on.XMPPAddr[0] != "example.com" {
		t.Errorf("XMPPAddr = %q", on.XMPPAddr)
	}
	if len(on.SRVName) != 2 || on.SRVName[1] != "_collab-edge._tls.example.com" {
		t.Errorf("SRVName = %q", on.SRVName)
	}
	if len(cert.DNSNames) != 1 {
		t.Errorf("x509 lost the dNSName next to otherNames: %q", cert.DNSNames)
	}
}

// TestParseOtherNamesMalformed feeds broken SAN extensions; nothing may panic.
func TestParseOtherNamesMalformed(t *testing.T) {
	good := sanExtension(t, certSpec{XMPPAddr: []string{"example.com"}}).Value
	cases := map[string][]byte{
		"empty":           {},
		"not a sequence":  {0x04, 0x01, 0x00},
		"truncated":       good[:len(good)-3],
		"trailing":        append(append([]byte{}, good...), 0x00),
		"bad length":      {0x30, 0x84, 0xff, 0xff, 0xff, 0xff},
		"otherName empty": {0x30, 0x02, 0xa0, 0x00},
		"otherName no value": func() []byte {
			oid, _ := asn1.Marshal(oidXMPPAddr)
			on, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: oid})
			seq, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: on})
			return seq
		}(),
		"value not a string": func() []byte {
			oid, _ := asn1.Marshal(oidXMPPAddr)
			n, _ := asn1.Marshal(42)
			ex, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: n})
			on, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: append(oid, ex...)})
			seq, _ := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: on})
			return seq
		}(),
	}
	for name, v := range cases {
		cert := &x509.Certificate{Extensions: []pkix.Extension{{Id: oidSubjectAltName, Value: v}}}
		on := parseOtherNames(cert)
		if name != "trailing" && name != "truncated" && len(on.XMPPAddr) != 0 {
			t.Errorf("%s: got xmppAddr %q from a malformed extension", name, on.XMPPAddr)
		}
		if c, _ := checkEdgeDomain(cert, "example.com"); c != ClassEdgeDomain {
			t.Errorf("%s: checkEdgeDomain = %q", name, c)
		}
		verifyPeer([]*x509.Certificate{cert}, "example.com", "", rulesXMPP, nil, testNow)
	}
	parseOtherNames(nil)
}

func TestVerifyPeer(t *testing.T) {
	ca := newTestCA(t, "edgesim local CA")
	other := newTestCA(t, "Some Other CA")
	roots := ca.pool()
	leaf := func(s certSpec) []*x509.Certificate {
		c, _ := ca.issue(t, s)
		return []*x509.Certificate{c}
	}
	domainCert := certSpec{CN: "mra.example.com", DNS: []string{"mra.example.com", "example.com"}}
	otherCert, _ := other.issue(t, domainCert)
	tests := []struct {
		name       string
		chain      []*x509.Certificate
		host, edge string
		r          rules
		want       Class
		detail     []string // substrings the detail must hold
	}{
		{"ok", leaf(domainCert), "mra.example.com", "mra.sp.example", rulesHTTP, ClassNone,
			[]string{"CN=mra.example.com", "SAN mra.example.com example.com", "issued by edgesim local CA", "valid until 2027-11-24"}},
		{"ok with CA in chain", append(leaf(domainCert), ca.cert), "MRA.example.com.", "mra.sp.example", rulesHTTP, ClassNone, nil},
		{"empty chain", nil, "mra.example.com", "mra.sp.example", rulesHTTP, ClassHandshake, []string{"no certificate"}},
		{"platform", leaf(certSpec{CN: "mra.sp.example", DNS: []string{"mra.sp.example", "collab-edge.sp.example"}}),
			"mra.example.com", "MRA.sp.example", rulesHTTP, ClassPlatformCert,
			[]string{"the edge presented its platform certificate (mra.sp.example): no domain certificate for mra.example.com"}},
		{"platform via wildcard", leaf(certSpec{CN: "sp.example", DNS: []string{"*.sp.example"}}),
			"mra.example.com", "mra.sp.example", rulesHTTP, ClassPlatformCert, nil},
		{"same edge and host is a mismatch, not platform", leaf(certSpec{CN: "x.example.net", DNS: []string{"x.example.net"}}),
			"mra.example.com", "mra.example.com", rulesHTTP, ClassNameMismatch, nil},
		{"expired", leaf(certSpec{CN: "mra.example.com", DNS: []string{"mra.example.com"}, NotBefore: testNow.AddDate(-1, 0, 0), NotAfter: testNow.AddDate(0, 0, -1)}),
			"mra.example.com", "mra.sp.example", rulesHTTP, ClassExpired,
			[]string{"certificate for mra.example.com expired on 2026-11-23 (now 2026-11-24)"}},
		{"not yet valid", leaf(certSpec{CN: "mra.example.com", DNS: []string{"mra.example.com"}, NotBefore: testNow.AddDate(0, 0, 2)}),
			"mra.example.com", "mra.sp.example", rulesHTTP, ClassExpired, []string{"not valid before 2026-11-26"}},
		{"self-signed", []*x509.Certificate{selfSigned(t, domainCert)}, "mra.example.com", "mra.sp.example", rulesHTTP, ClassUntrusted,
			[]string{"self-signed"}},
		{"unknown CA", []*x509.Certificate{otherCert}, "mra.example.com", "mra.sp.example", rulesHTTP, ClassUntrusted,
			[]string{`issued by "Some Other CA"`, "not a trusted authority"}},
		{"name mismatch", leaf(certSpec{CN: "www.example.net", DNS: []string{"www.example.net"}}), "mra.example.com", "mra.sp.example", rulesHTTP, ClassNameMismatch,
			[]string{"does not name mra.example.com", "www.example.net"}},
		{"CN only, HTTP", leaf(certSpec{CN: "mra.example.com"}), "mra.example.com", "mra.sp.example", rulesHTTP, ClassNone, []string{"no SAN"}},
		{"CN only, XMPP", leaf(certSpec{CN: "mra.example.com"}), "mra.example.com", "mra.sp.example", rulesXMPP, ClassNone, nil},
		{"wildcard", leaf(certSpec{CN: "w", DNS: []string{"*.example.com"}}), "mra.example.com", "mra.sp.example", rulesHTTP, ClassNone, nil},
		{"wildcard not bare domain", leaf(certSpec{CN: "w", DNS: []string{"*.example.com"}}), "example.com", "mra.sp.example", rulesHTTP, ClassNameMismatch, nil},
		{"wildcard one label only", leaf(certSpec{CN: "w", DNS: []string{"*.example.com"}}), "a.mra.example.com", "mra.sp.example", rulesHTTP, ClassNameMismatch, nil},
		{"partial wildcard", leaf(certSpec{CN: "w", DNS: []string{"m*.example.com"}}), "mra.example.com", "mra.sp.example", rulesHTTP, ClassNameMismatch, nil},
		{"xmppAddr, XMPP", leaf(certSpec{CN: "w", XMPPAddr: []string{"mra.example.com"}}), "mra.example.com", "mra.sp.example", rulesXMPP, ClassNone,
			[]string{"xmppAddr:mra.example.com"}},
		{"xmppAddr ignored by HTTP", leaf(certSpec{CN: "w", XMPPAddr: []string{"mra.example.com"}}), "mra.example.com", "mra.sp.example", rulesHTTP, ClassNameMismatch, nil},
		{"SRVName xmpp-client, XMPP", leaf(certSpec{CN: "w", SRVName: []string{"_xmpp-client.Example.com"}}), "example.com", "mra.sp.example", rulesXMPP, ClassNone, nil},
		{"SRVName any service, XMPP", leaf(certSpec{CN: "w", SRVName: []string{"_collab-edge._tls.mra.example.com"}}), "mra.example.com", "mra.sp.example", rulesXMPP, ClassNone, nil},
		{"SRVName other host, XMPP", leaf(certSpec{CN: "w", SRVName: []string{"_xmpp-client.example.org"}}), "example.com", "mra.sp.example", rulesXMPP, ClassNameMismatch,
			[]string{"SRVName _xmpp-client.example.org"}},
		{"SRVName ignored by HTTP", leaf(certSpec{CN: "w", SRVName: []string{"_xmpp-client.example.com"}}), "example.com", "mra.sp.example", rulesHTTP, ClassNameMismatch, nil},
		{"IP host", leaf(certSpec{CN: "w", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}), "127.0.0.1", "", rulesHTTP, ClassNone, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			class, detail := verifyPeer(tc.chain, tc.host, tc.edge, tc.r, roots, testNow)
			if class != tc.want {
				t.Fatalf("class = %q (%s), want %q", class, detail, tc.want)
			}
			if detail == "" {
				t.Error("empty detail")
			}
			for _, s := range tc.detail {
				if !strings.Contains(detail, s) {
					t.Errorf("detail %q lacks %q", detail, s)
				}
			}
		})
	}
}

func TestCheckEdgeDomain(t *testing.T) {
	ca := newTestCA(t, "edgesim local CA")
	tests := []struct {
		name   string
		spec   certSpec
		want   Class
		detail string
	}{
		{"dNSName", certSpec{DNS: []string{"mra.example.com", "Example.COM"}}, ClassNone, "as dNSName Example.COM"},
		{"collab-edge", certSpec{DNS: []string{"mra.example.com", "collab-edge.example.com"}}, ClassNone, "CollabEdgeDNS"},
		{"SRVName", certSpec{DNS: []string{"mra.example.com"}, SRVName: []string{"_collab-edge._tls.example.com"}}, ClassNone, "SRVName"},
		{"wildcard not counted", certSpec{DNS: []string{"*.example.com"}}, ClassEdgeDomain, "the wildcard SAN *.example.com does not count"},
		{"missing", certSpec{DNS: []string{"mra.example.com"}, SRVName: []string{"_xmpp-client.example.com"}}, ClassEdgeDomain,
			"Edge domain 'example.com' and corresponding SRVName '_collab-edge._tls.example.com' not found in certificate SAN list (SANs: mra.example.com, SRVName:_xmpp-client.example.com)"},
		{"other domain", certSpec{DNS: []string{"example.org", "collab-edge.example.org"}}, ClassEdgeDomain, "not found"},
		{"no SANs", certSpec{CN: "example.com"}, ClassEdgeDomain, "(SANs: none)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert, _ := ca.issue(t, tc.spec)
			class, detail := checkEdgeDomain(cert, "example.com.")
			if class != tc.want || !strings.Contains(detail, tc.detail) {
				t.Errorf("checkEdgeDomain = %q, %q; want %q with %q", class, detail, tc.want, tc.detail)
			}
		})
	}
	if c, _ := checkEdgeDomain(nil, "example.com"); c != ClassEdgeDomain {
		t.Errorf("nil leaf: %q", c)
	}
}
