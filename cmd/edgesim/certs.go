package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/edgesim/edgesim/tenant/certlint"
)

// errCertsFailed ends 'certs lint' when a rule failed: the table has said which, so main exits 1
// with nothing more to print (it is an errLoginFailed to main).
var errCertsFailed = fmt.Errorf("certificate check failed: %w", errLoginFailed)

const certsLintSynopsis = "edgesim certs lint FILE [--role expressway-e|expressway-c|http|xmpp] [--domains a.com,b.com] " +
	"[--xmpp-domains LIST] [--chat-aliases LIST] [--security-profiles LIST] [--host NAME] [--roots FILE] [--json]"

// runCerts is 'edgesim certs': certificate tools. Its one subcommand, lint, checks a
// certificate chain against Expressway's and Jabber's rules.
func runCerts(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "lint" {
		return runCertsLint(args[1:], stdout, stderr)
	}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		return runCertsLint([]string{"-h"}, stdout, stderr)
	}
	if len(args) > 0 {
		return usagef("unknown subcommand %q: the certs command has one, 'edgesim certs lint FILE [flags]' (see 'edgesim certs lint -h')", args[0])
	}
	return usagef("the certs command has one subcommand: 'edgesim certs lint FILE [flags]' (see 'edgesim certs lint -h')")
}

// certsLintReport is what --json prints.
type certsLintReport struct {
	File  string          `json:"file"`
	Role  certlint.Role   `json:"role"`
	Pass  bool            `json:"pass"`
	Rules []certlint.Rule `json:"rules"`
}

func runCertsLint(args []string, stdout, stderr io.Writer) error {
	var role, domains, xmppDomains, chatAliases, profiles, roots, host string
	var asJSON bool
	fs := newFlagSet("certs lint", certsLintSynopsis, stderr)
	fs.StringVar(&role, "role", string(certlint.RoleExpresswayE), "what the certificate is for: expressway-e, expressway-c, http (Jabber over HTTPS/SIP) or xmpp (Jabber over XMPP)")
	fs.StringVar(&domains, "domains", "", "comma-separated Unified CM registration domains the SANs must cover, plain or as collab-edge.<domain> (http, xmpp: the service domains users type)")
	fs.StringVar(&xmppDomains, "xmpp-domains", "", "comma-separated XMPP federation domains that must be SAN dNSNames")
	fs.StringVar(&chatAliases, "chat-aliases", "", "comma-separated IM and Presence chat node aliases that must be SAN dNSNames")
	fs.StringVar(&profiles, "security-profiles", "", "comma-separated Unified CM phone security profile names (FQDN form) that must be SAN dNSNames (expressway-c)")
	fs.StringVar(&host, "host", "", "`NAME` clients connect to: a SAN dNSName for Expressway roles, Jabber's identity rules for http and xmpp")
	fs.StringVar(&roots, "roots", "", "trusted root certificates, PEM or DER `FILE` (default: the system's)")
	fs.BoolVar(&asJSON, "json", false, "print the rules as JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one certificate file, like 'edgesim certs lint --domains example.com server.pem'")
	}
	file := pos[0]
	o := certlint.Options{Host: strings.TrimSpace(host)}
	if o.Role, err = certlint.ParseRole(role); err != nil {
		return usagef("--role %q: want one of expressway-e, expressway-c, http, xmpp", role)
	}
	for _, l := range []struct {
		flag string
		list string
		dst  *[]string
	}{
		{"--domains", domains, &o.Domains},
		{"--xmpp-domains", xmppDomains, &o.XMPPDomains},
		{"--chat-aliases", chatAliases, &o.ChatAliases},
		{"--security-profiles", profiles, &o.SecurityProfiles},
	} {
		if *l.dst, err = nameList(l.flag, l.list); err != nil {
			return err
		}
	}
	if strings.ContainsAny(o.Host, " \t/@*") {
		return usagef("--host %q: want a host name or address, like mra.example.com", host)
	}
	if roots != "" {
		if o.Roots, err = readRoots(roots); err != nil {
			return err
		}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return usagef("cannot read the certificate file: %v", err) // *PathError names the file
	}
	chain, err := certlint.ParseChain(data)
	if err != nil {
		return usagef("%s is not a usable certificate file: %v", file, err)
	}
	if bytes.Contains(data, []byte("PRIVATE KEY-----")) {
		fmt.Fprintf(stderr, "note: %s also holds a private key; it was ignored and is not printed (Expressway takes the key as a separate upload)\n", file)
	}

	rules := certlint.Lint(chain, o)
	failed := certlint.Failed(rules)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(certsLintReport{File: file, Role: o.Role, Pass: len(failed) == 0, Rules: rules}); err != nil {
			return err
		}
	} else {
		printLint(stdout, file, o.Role, chain, rules, failed)
	}
	if len(failed) > 0 {
		return errCertsFailed
	}
	return nil
}

// nameList splits a comma-separated flag value into names; a wildcard, an address or a name
// with spaces is a usage error.
func nameList(flag, list string) ([]string, error) {
	var out []string
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		switch {
		case n == "":
			continue
		case strings.Contains(n, "@"):
			return nil, usagef("%s %q: give the domain (%s), not an address", flag, n, n[strings.LastIndex(n, "@")+1:])
		case strings.Contains(n, "*"):
			return nil, usagef("%s %q: list the names themselves, not a wildcard", flag, n)
		case strings.ContainsAny(n, " \t/:"):
			return nil, usagef("%s %q: want DNS names separated by commas, like a.com,b.com", flag, n)
		}
		out = append(out, n)
	}
	return out, nil
}

// readRoots reads --roots into a pool.
func readRoots(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, usagef("--roots: %v", err)
	}
	certs, err := certlint.ParseChain(data)
	if err != nil {
		return nil, usagef("--roots %s is not a usable certificate file: %v", name, err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// printLint writes a line about the certificate, the RULE / RESULT / REASON table and a verdict.
func printLint(w io.Writer, file string, role certlint.Role, chain []*x509.Certificate, rules []certlint.Rule, failed []string) {
	leaf := chain[0]
	subject := leaf.Subject.CommonName
	if subject == "" {
		subject = leaf.Subject.String()
	}
	n := "1 certificate"
	if len(chain) > 1 {
		n = fmt.Sprintf("%d certificates", len(chain))
	}
	fmt.Fprintf(w, "%s: %s, leaf %s, checked as %s\n\n", printable(file), n, printable(subject), role)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tRESULT\tREASON")
	for _, r := range rules {
		result := "pass"
		if !r.Pass {
			result = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, result, printable(r.Reason))
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	if len(failed) == 0 {
		fmt.Fprintf(w, "all %d rules pass\n", len(rules))
		return
	}
	fmt.Fprintf(w, "%d of %d rules FAILED: %s\n", len(failed), len(rules), strings.Join(failed, ", "))
}

// printable replaces control characters (names in a certificate are the issuer's bytes) so that
// they cannot break the table or the terminal.
// printableWriter writes through printable's filter, keeping line breaks and tabs: for output
// that carries names from certificates, which are the issuer's bytes (Go accepts control
// characters in a dNSName, so a crafted certificate could send escapes to the terminal).
type printableWriter struct{ w io.Writer }

func (p printableWriter) Write(b []byte) (int, error) {
	clean := strings.Map(func(r rune) rune {
		if r != '\n' && r != '\t' && unicode.IsControl(r) {
			return '?'
		}
		return r
	}, string(b))
	if _, err := io.WriteString(p.w, clean); err != nil {
		return 0, err
	}
	return len(b), nil
}

func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}
