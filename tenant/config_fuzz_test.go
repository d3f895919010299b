package tenant

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParse feeds tenants files to Parse, which reads them from disk and ConfigMaps an operator
// may not control. Whatever the bytes, Parse returns a Directory or an error, never both and
// never a panic; a Directory it returns holds only what validation promises.
func FuzzParse(f *testing.F) {
	f.Add([]byte("provider:\n  edge_host: mra-host.sp.com\ntenants:\n  - domain: example.com\n    users: [bob, alice]\n    certificate: valid\n  - domain: Example.ORG.\n    certificate: missing\n"))
	f.Add([]byte("tenants:\n  - domain: a.example\n    edge_host: expe1.a.example\n    srv:\n      - {target: expe1.a.example, port: 8443, priority: 10, weight: 60}\n      - {target: expe2.a.example, priority: 20}\n    passwords: {user1: secret}\n    acme: true\n"))
	f.Add([]byte("tenants:\n  - domain: files.example\n    cert_file: certs/files.pem\n    key_file: certs/files.key\n"))
	f.Add([]byte("x: &a [1, 2]\ntenants:\n  - domain: example.com\n    users: *a\n"))
	f.Add([]byte("tenants:\n  - domian: example.com\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			if d != nil {
				t.Fatalf("a directory and an error: %v", err)
			}
			return
		}
		if d == nil || d.Len() == 0 {
			t.Fatal("no error and no tenants")
		}
		p := d.Provider()
		if ValidateDomain(p.EdgeHost) != nil || ValidateDomain(p.Domain) != nil {
			t.Fatalf("invalid provider accepted: %+v", p)
		}
		n := 0
		d.Each(func(tn *Tenant) bool {
			n++
			if err := ValidateDomain(tn.Domain); err != nil {
				t.Fatalf("invalid domain accepted: %v", err)
			}
			if got, ok := d.Lookup(strings.ToUpper(tn.Domain) + "."); !ok || got != tn {
				t.Fatalf("Lookup(%q) does not find its tenant", tn.Domain)
			}
			if !slices.Contains(Scenarios, tn.Certificate) || len(tn.Users) == 0 {
				t.Fatalf("tenant %s: scenario %q, %d users", tn.Domain, tn.Certificate, len(tn.Users))
			}
			if (tn.Certificate == Files) != (tn.CertFile != "" && tn.KeyFile != "") {
				t.Fatalf("tenant %s: scenario %q with cert_file %q, key_file %q", tn.Domain, tn.Certificate, tn.CertFile, tn.KeyFile)
			}
			for _, tg := range tn.Targets(p) {
				if ValidateDomain(tg.Target) != nil {
					t.Fatalf("tenant %s: invalid SRV target %q accepted", tn.Domain, tg.Target)
				}
			}
			for _, u := range tn.Users {
				if known, _ := tn.HasUser(u, ""); u == "" || !known {
					t.Fatalf("tenant %s: user %q unknown to HasUser", tn.Domain, u)
				}
			}
			return true
		})
		if n != d.Len() {
			t.Fatalf("Each visited %d tenants, Len says %d", n, d.Len())
		}
	})
}
