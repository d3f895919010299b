package tenant

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseIssueExample(t *testing.T) {
	d, err := Parse([]byte(`
provider:
  edge_host: mra-host.sp.com     # SRV target for tenants served by the provider's edge
tenants:
  - domain: example.com
    users: [bob, alice]
    certificate: valid
  - domain: Example.ORG.
    certificate: missing
`))
	if err != nil {
		t.Fatal(err)
	}
	p := d.Provider()
	if p.EdgeHost != "mra-host.sp.com" || p.Domain != "sp.com" || d.Len() != 2 {
		t.Fatalf("provider %+v, %d tenants", p, d.Len())
	}
	org, ok := d.Lookup("EXAMPLE.org.")
	if !ok || org.Domain != "example.org" || org.Certificate != Missing {
		t.Fatalf("lookup example.org: %+v %v", org, ok)
	}
	com, _ := d.Lookup("example.com")
	if got := com.SNIHosts(p); len(got) != 1 || got[0] != "mra-host.example.com" {
		t.Fatalf("SNI hosts %v, want mra-host.example.com", got)
	}
	if tg := com.Targets(p); len(tg) != 1 || tg[0].Target != "mra-host.sp.com" {
		t.Fatalf("targets %+v", tg)
	}
	if known, ok := com.HasUser("Bob", "any"); !known || !ok {
		t.Fatal("bob must be accepted with any password")
	}
	if known, _ := com.HasUser("mallory", "x"); known {
		t.Fatal("unknown user accepted")
	}
	if known, ok := org.HasUser("user10", "x"); !known || !ok {
		t.Fatal("a tenant listing no users must know user1 … user10")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
		is               error
	}{
		{"typo in a key", "tenants:\n  - domian: example.com\n", "field domian not found", nil},
		{"no tenants", "provider:\n  edge_host: a.b.c\n", "", ErrNoTenants},
		{"bad scenario", "tenants:\n  - domain: example.com\n    certificate: sparkly\n", "valid|missing|expired", ErrBadScenario},
		{"duplicate", "tenants:\n  - domain: example.com\n  - domain: EXAMPLE.com\n", "", ErrDuplicate},
		{"address as domain", "tenants:\n  - domain: 10.0.0.1\n", "looks like an address", ErrBadDomain},
		{"one label", "tenants:\n  - domain: localhost\n", "at least two labels", ErrBadDomain},
		{"underscore", "tenants:\n  - domain: ex_ample.com\n", "letters, digits", ErrBadDomain},
		{"user with domain", "tenants:\n  - domain: example.com\n    users: [bob@example.com]\n", "part before @", nil},
		{"password for unknown user", "tenants:\n  - domain: example.com\n    users: [bob]\n    passwords: {eve: x}\n", "not in users", nil},
		{"cert file without key", "tenants:\n  - domain: example.com\n    cert_file: a.pem\n", "go together", nil},
		{"srv target address", "tenants:\n  - domain: example.com\n    srv: [{target: 192.0.2.1}]\n", "never addresses", nil},
		{"not YAML", "tenants: [", "parse config", nil},
		{"empty", "", "the config is empty", ErrNoTenants},
		{"acme and files", "tenants:\n  - domain: example.com\n    acme: true\n    cert_file: a.pem\n    key_file: a.key\n", "ACME issues the certificate", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("err %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %q lacks %q", err, tt.want)
			}
		})
	}
}

func TestLoadResolvesPathsAgainstTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tenants.yaml")
	yaml := "tenants:\n  - domain: example.com\n    cert_file: certs/a.pem\n    key_file: /abs/a.key\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	tn, _ := d.Lookup("example.com")
	if tn.CertFile != filepath.Join(dir, "certs/a.pem") || tn.KeyFile != "/abs/a.key" || tn.Certificate != Files {
		t.Fatalf("%+v", tn)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestSNIHost(t *testing.T) {
	tests := []struct{ target, domain, want string }{
		{"mra-host.sp.com", "example.com", "mra-host.example.com"},
		{"expe1.example.com", "example.com", "expe1.example.com"},
		{"EXPE1.Example.com.", "example.com", "expe1.example.com"},
		{"a.b.example.com", "example.com", "a.b.example.com"},
		{"mra.notexample.com", "example.com", "mra.example.com"},
	}
	for _, tt := range tests {
		if got := SNIHost(tt.target, tt.domain); got != tt.want {
			t.Errorf("SNIHost(%q, %q) = %q, want %q", tt.target, tt.domain, got, tt.want)
		}
	}
}

func TestSynthetic(t *testing.T) {
	d, err := Synthetic(1_000_000, 3)
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 1_000_000 || d.Provider().EdgeHost != "mra.sp.example" {
		t.Fatalf("len %d provider %+v", d.Len(), d.Provider())
	}
	tn, ok := d.Lookup("TENANT-1000000.example.")
	if !ok || tn.Domain != "tenant-1000000.example" || len(tn.Users) != 3 || tn.Users[2] != "user3" {
		t.Fatalf("%+v %v", tn, ok)
	}
	if got := tn.SNIHosts(d.Provider()); got[0] != "mra.tenant-1000000.example" {
		t.Fatalf("SNI %v", got)
	}
	for _, bad := range []string{"tenant-0.example", "tenant-1000001.example", "tenant-01.example", "tenant-.example", "tenant-x.example", "example.com"} {
		if _, ok := d.Lookup(bad); ok {
			t.Errorf("Lookup(%q) found a tenant", bad)
		}
	}
	n := 0
	d.Each(func(t *Tenant) bool { n++; return n < 5 })
	if n != 5 {
		t.Fatalf("Each did not stop: %d", n)
	}
	if _, err := Synthetic(0, 1); !errors.Is(err, ErrNoTenants) {
		t.Fatalf("Synthetic(0): %v", err)
	}
}
