package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgesim/edgesim/tenant/domains"
)

const domainsSynopsis = `edgesim domains [--admin URL] [--token FILE] [--ca FILE] COMMAND [DOMAIN] [flags]

Domain certificates as on Expressway-E (Maintenance > Security > Domain certificates), on a
running 'edgesim serve' through its admin API. A CSR's private key stays on the server.

  edgesim domains list
  edgesim domains add example.com
  edgesim domains csr example.com --key rsa-2048 --digest sha256 --san-format collab-edge > example.com.csr
  edgesim domains upload example.com --cert example.com.pem                      # signed for that CSR
  edgesim domains upload example.com --cert example.com.pem --key example.com.key  # made elsewhere
  edgesim domains show example.com [--pem]
  edgesim domains csr-discard example.com
  edgesim domains delete example.com
  edgesim domains acme example.com [--disable]
  edgesim domains --admin https://edge.example:9180 --ca edgesim-data/ca.pem --token edgesim-data/admin-token list

commands: list, add, csr, csr-discard, upload, show, delete, acme`

// domainsGlobal are the flags every 'edgesim domains' command takes: where the API is.
type domainsGlobal struct{ admin, token, ca string }

func (g *domainsGlobal) register(fs *flagSet) {
	fs.StringVar(&g.admin, "admin", g.admin, "admin API `URL` of 'edgesim serve' (its banner shows it)")
	fs.StringVar(&g.token, "token", g.token, "bearer token `FILE`, needed when the API is bound beyond loopback (default: $EDGESIM_ADMIN_TOKEN)")
	fs.StringVar(&g.ca, "ca", g.ca, "trusted root certificates, PEM `FILE`, for an https admin URL (edgesim-data/ca.pem)")
}

// domainsFlags are the commands' own flags.
type domainsFlags struct {
	keyType, digest, sanFormat string
	cn, o, ou, l, st, c        string
	sans                       stringList
	certFile, keyFile          string
	pem, disable               bool
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// register adds the flags of command sub (every command's flags for "" and help).
func (f *domainsFlags) register(fs *flagSet, sub string) {
	all := sub == ""
	if all || sub == "csr" {
		keyUsage := "key type: rsa-1024|rsa-2048|rsa-4096|ecdsa-p256|ecdsa-p384 (default rsa-2048)"
		if all {
			keyUsage = "csr: the " + keyUsage + "; upload: the private key `FILE` of a certificate made elsewhere"
		}
		fs.StringVar(&f.keyType, "key", "", keyUsage)
		fs.StringVar(&f.digest, "digest", "", "csr: signature digest sha256|sha384|sha512 (default sha256)")
		fs.StringVar(&f.sanFormat, "san-format", "", "csr: the domain in the SANs as dns (example.com) or collab-edge (collab-edge.example.com) (default dns)")
		fs.StringVar(&f.cn, "cn", "", "csr: subject common name (default: the domain's first SNI host)")
		fs.StringVar(&f.o, "o", "", "csr: subject organization")
		fs.StringVar(&f.ou, "ou", "", "csr: subject organizational unit")
		fs.StringVar(&f.l, "l", "", "csr: subject locality")
		fs.StringVar(&f.st, "st", "", "csr: subject state or province")
		fs.StringVar(&f.c, "c", "", "csr: subject country, two letters")
		fs.Var(&f.sans, "san", "csr: an extra SAN dNSName `NAME` (repeat for more)")
	}
	if sub == "upload" {
		fs.StringVar(&f.keyFile, "key", "", "the private key `FILE` (PEM, not password-protected) of a certificate made elsewhere; not while a CSR is pending")
	}
	if all || sub == "upload" {
		fs.StringVar(&f.certFile, "cert", "", "upload: the certificate chain `FILE` (PEM, server certificate first)")
	}
	if all || sub == "show" {
		fs.BoolVar(&f.pem, "pem", false, "show: print the certificate chain as PEM")
	}
	if all || sub == "acme" {
		fs.BoolVar(&f.disable, "disable", false, "acme: turn ACME off for the domain")
	}
}

var domainsCommands = map[string]bool{"list": false, "add": true, "csr": true, "csr-discard": true,
	"upload": true, "show": true, "delete": true, "acme": true} // command -> takes a DOMAIN

func runDomains(args []string, stdout, stderr io.Writer) error {
	stdout, stderr = printableWriter{stdout}, printableWriter{stderr} // names from certificates
	g := domainsGlobal{admin: "http://" + defaultAdminAddr}
	fs := newFlagSet("domains", domainsSynopsis, stderr)
	g.register(fs)
	// Go's flag package stops at the command; flags after it are parsed with the command's own.
	err := fs.FlagSet.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		help := newFlagSet("domains", domainsSynopsis, stderr)
		g.register(help)
		new(domainsFlags).register(help, "")
		return help.parse([]string{"-h"})
	}
	if err != nil {
		return usagef("%v", err)
	}
	if fs.NArg() == 0 {
		return usagef("no command: want one of list, add, csr, csr-discard, upload, show, delete, acme")
	}
	sub, rest := fs.Arg(0), fs.Args()[1:]
	takesDomain, ok := domainsCommands[sub]
	if !ok {
		return usagef("unknown command %q: want one of list, add, csr, csr-discard, upload, show, delete, acme", sub)
	}
	sfs := newFlagSet("domains "+sub, domainsSynopsis, stderr)
	g.register(sfs)
	var f domainsFlags
	f.register(sfs, sub)
	pos, err := parseInterspersed(sfs, rest)
	if err != nil {
		return err
	}
	var domain string
	switch {
	case takesDomain && len(pos) != 1:
		return usagef("'edgesim domains %s' takes one DOMAIN, got %d arguments", sub, len(pos))
	case !takesDomain && len(pos) != 0:
		return usagef("'edgesim domains %s' takes no arguments, got %q", sub, pos[0])
	case takesDomain:
		domain = pos[0]
	}
	if sub == "upload" && f.certFile == "" {
		return usagef("upload needs --cert FILE (the PEM certificate chain)")
	}
	c, err := newAdminClient(g)
	if err != nil {
		return err
	}
	p := domains.APIPrefix + "/domains"
	if domain != "" {
		p += "/" + url.PathEscape(domain)
	}
	switch sub {
	case "list":
		return c.list(stdout)
	case "add":
		var in domains.Info
		if err := c.do("POST", domains.APIPrefix+"/domains", map[string]string{"domain": domain}, &in); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "added %s (SNI hosts: %s); next: edgesim domains csr %s\n", in.Domain, strings.Join(in.Hosts, ", "), in.Domain)
	case "csr":
		o := domains.CSROptions{Key: f.keyType, Digest: f.digest, SANFormat: f.sanFormat, SANs: f.sans,
			Subject: domains.Subject{CN: f.cn, O: f.o, OU: f.ou, L: f.l, ST: f.st, C: f.c}}
		var in domains.CSRInfo
		if err := c.do("POST", p+"/csr", o, &in); err != nil {
			return err
		}
		for _, w := range in.Warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		fmt.Fprintf(stderr, "CSR for %s (%s, %s; SANs %s): send it to a CA, then 'edgesim domains upload %s --cert FILE'\n",
			in.Domain, in.Key, in.Digest, strings.Join(in.SANs, ", "), in.Domain)
		_, err = io.WriteString(stdout, in.CSR)
		return err
	case "csr-discard":
		return c.message("DELETE", p+"/csr", stdout)
	case "upload":
		cert, err := os.ReadFile(f.certFile)
		if err != nil {
			return usagef("--cert: %v", err)
		}
		body := map[string]string{"certificate": string(cert)}
		if f.keyFile != "" {
			key, err := os.ReadFile(f.keyFile)
			if err != nil {
				return usagef("--key: %v", err)
			}
			if len(strings.TrimSpace(string(key))) == 0 {
				return usagef("--key %s is empty: give the PEM file of the certificate's private key", f.keyFile)
			}
			body["key"] = string(key)
		}
		var d domains.Details
		if err := c.do("PUT", p+"/certificate", body, &d); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "certificate for %s installed on %s: %s, issued by %s, valid until %s\n",
			d.Domain, strings.Join(d.Hosts, ", "), d.Subject, d.Issuer, d.NotAfter.Format(time.DateOnly))
		for _, w := range d.Warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
	case "show":
		if f.pem {
			b, err := c.raw("GET", p+"/certificate?format=pem")
			if err != nil {
				return err
			}
			_, err = stdout.Write(b)
			return err
		}
		var d domains.Details
		if err := c.do("GET", p+"/certificate", nil, &d); err != nil {
			return err
		}
		printDetails(stdout, d)
	case "delete":
		return c.message("DELETE", p, stdout)
	case "acme":
		method := "POST"
		if f.disable {
			method = "DELETE"
		}
		var st domains.ACMEStatus
		if err := c.do(method, p+"/acme", nil, &st); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ACME for %s: %s", domain, st.State)
		if st.Detail != "" {
			fmt.Fprintf(stdout, " (%s)", st.Detail)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// adminClient talks to the admin API.
type adminClient struct {
	base, token string
	hc          *http.Client
}

func newAdminClient(g domainsGlobal) (*adminClient, error) {
	u, err := url.Parse(g.admin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--admin %q: want http://HOST:PORT or https://HOST:PORT, as the serve banner shows", g.admin)
	}
	c := &adminClient{base: u.Scheme + "://" + u.Host, hc: &http.Client{Timeout: 2 * time.Minute}}
	switch {
	case g.token != "":
		b, err := os.ReadFile(g.token)
		if err != nil {
			return nil, usagef("--token: %v", err)
		}
		c.token = strings.TrimSpace(string(b))
	default:
		c.token = strings.TrimSpace(os.Getenv("EDGESIM_ADMIN_TOKEN"))
	}
	if g.ca != "" {
		b, err := os.ReadFile(g.ca)
		if err != nil {
			return nil, usagef("--ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, usagef("--ca %s holds no PEM certificate (want one or more '-----BEGIN CERTIFICATE-----' blocks)", g.ca)
		}
		c.hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	return c, nil
}

// raw makes a request and returns the body of a 2xx answer; any other answer becomes an error
// carrying the API's sentence.
func (c *adminClient) raw(method, path string) ([]byte, error) { return c.send(method, path, nil) }

func (c *adminClient) send(method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var unknown x509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("the admin API at %s presents a certificate from an unknown CA: pass --ca with the edge's CA (edgesim-data/ca.pem)", c.base)
		}
		return nil, fmt.Errorf("cannot reach the admin API at %s: %v; is 'edgesim serve' running, and is --admin right?", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API at %s: %v", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		var ae domains.APIError
		if json.Unmarshal(b, &ae) == nil && ae.Error != "" {
			return nil, errors.New(printable(ae.Error)) // it may quote a certificate's names
		}
		return nil, fmt.Errorf("the admin API at %s answered %s; is --admin the URL the serve banner shows?", c.base, resp.Status)
	}
	return b, nil
}

// do sends body as JSON and decodes the answer into v.
func (c *adminClient) do(method, path string, body, v any) error {
	b, err := c.send(method, path, body)
	if err != nil {
		return err
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("the admin API at %s answered something other than its JSON: %v", c.base, err)
	}
	return nil
}

func (c *adminClient) message(method, path string, stdout io.Writer) error {
	var m domains.Message
	if err := c.do(method, path, nil, &m); err != nil {
		return err
	}
	fmt.Fprintln(stdout, m.Message)
	return nil
}

func (c *adminClient) list(stdout io.Writer) error {
	var l struct {
		Domains []domains.Info `json:"domains"`
	}
	if err := c.do("GET", domains.APIPrefix+"/domains", nil, &l); err != nil {
		return err
	}
	if len(l.Domains) == 0 {
		fmt.Fprintln(stdout, "no domains; add one with 'edgesim domains add DOMAIN'")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tSOURCE\tSUBJECT\tSANS\tISSUER\tNOT AFTER\tCSR\tACME\tHOSTS")
	for _, in := range l.Domains {
		notAfter, issuer, csr, subject, sans := "-", "-", "-", "-", "-"
		if in.Subject != "" {
			subject = in.Subject
		}
		if len(in.SANs) > 0 {
			sans = strings.Join(in.SANs, ",")
		}
		if !in.NotAfter.IsZero() {
			notAfter = in.NotAfter.Format(time.DateOnly)
			if in.Expired {
				notAfter += " (expired)"
			}
		}
		if in.Issuer != "" {
			issuer = in.Issuer
		}
		if in.CSRPending {
			csr = "pending"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.Domain, in.Source, subject, sans, issuer, notAfter, csr, in.ACME.State, strings.Join(in.Hosts, ","))
	}
	return tw.Flush()
}

func printDetails(w io.Writer, d domains.Details) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("domain", d.Domain)
	row("source", d.Source)
	row("served for", strings.Join(d.Hosts, ", "))
	row("subject", d.Subject)
	row("issuer", d.Issuer)
	row("serial", d.Serial)
	row("SANs", strings.Join(d.SANs, ", "))
	row("not before", d.NotBefore.Format(time.RFC3339))
	notAfter := d.NotAfter.Format(time.RFC3339)
	if d.Expired {
		notAfter += " (expired)"
	}
	row("not after", notAfter)
	row("key", fmt.Sprintf("%s %d", d.KeyType, d.KeySize))
	row("signature", d.SignatureAlgorithm)
	row("extended key usage", strings.Join(d.EKUs, ", "))
	row("SHA-256 fingerprint", d.SHA256)
	row("chain", fmt.Sprintf("%d certificates", d.ChainLength))
	for i, c := range d.Chain {
		row(fmt.Sprintf("  %d", i), fmt.Sprintf("%s (issued by %s, until %s)", c.Subject, c.Issuer, c.NotAfter.Format(time.DateOnly)))
	}
	_ = tw.Flush()
	for _, warn := range d.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
}
