// Command edgesim simulates a multitenant Cisco Expressway-E (DNS, TLS edge listeners with
// per-tenant domain certificates chosen by SNI) for Jabber MRA login testing.
//
//	edgesim serve --tenants 1000
//	edgesim serve --config tenants.yaml
//	edgesim dns export --tenants 1000 --out zones/
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// exit codes
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// errUsage marks an error the user fixes by changing the command line; make one with usagef.
var errUsage = errors.New("usage error")

type usageError struct{ msg string }

func (e usageError) Error() string        { return e.msg }
func (e usageError) Is(target error) bool { return target == errUsage }

// usagef returns a usage error: exit status 2 and a pointer to -h.
func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the simulated Expressway-E: DNS, HTTPS 8443, XMPP 5222, SIP 5061, /metrics", runServe},
		{"login", "trace one Jabber MRA login step by step: SRV, SNI, TLS, identity, edge config, XMPP, SIP", runLogin},
		{"load", "replay logins for many users at a set rate; latency per step, results file", runLoad},
		{"report", "merge results files and print the summary; --html writes a page", runReport},
		{"demo", "start a simulated edge on loopback, trace two logins, run a short load, write a report", runDemo},
		{"domains", "domain certificates as on Expressway-E: list, add, csr, upload, show, delete, acme (admin API client)", runDomains},
		{"certs", "certificate tools: 'edgesim certs lint FILE' checks a certificate against Expressway's and Jabber's rules", runCerts},
		{"dns", "DNS tools: 'edgesim dns export' writes the zones as master files", runDNS},
		{"version", "print the version", runVersion},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		args[0] = "version"
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, errLoginFailed):
			return exitFail // the command has said why
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "edgesim %s: %v\n", c.name, err)
			fmt.Fprintf(stderr, "run 'edgesim %s -h' for its flags\n", c.name)
			return exitUsage
		default:
			fmt.Fprintf(stderr, "edgesim %s: %v\n", c.name, err)
			return exitFail
		}
	}
	fmt.Fprintf(stderr, "edgesim: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "edgesim: a simulated multitenant Cisco Expressway-E for Jabber MRA testing")
	fmt.Fprintln(w, "\nusage: edgesim <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nexamples:")
	fmt.Fprintln(w, "  edgesim demo")
	fmt.Fprintln(w, "  edgesim serve --tenants 1000")
	fmt.Fprintln(w, "  edgesim login --dns 127.0.0.1:5353 --ca edgesim-data/ca.pem bob@example.com")
	fmt.Fprintln(w, "  edgesim load --dns 127.0.0.1:5353 --ca edgesim-data/ca.pem --tenants 1000 --rate 200 --duration 1m --out results.json")
	fmt.Fprintln(w, "  edgesim report results.json --html report.html")
	fmt.Fprintln(w, "  edgesim serve --config tenants.yaml --key-type ecdsa-p256")
	fmt.Fprintln(w, "  edgesim dns export --tenants 100 --out zones/")
}

// flagSet is a flag.FlagSet that reports errors as usage errors instead of exiting, and prints
// its synopsis and flags for -h.
type flagSet struct {
	*flag.FlagSet
	synopsis string
	stderr   io.Writer
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are printed once, by run
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, synopsis: synopsis, stderr: stderr}
}

// parse parses args; -h prints the usage, a bad flag or a stray argument is a usage error.
func (fs *flagSet) parse(args []string) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(fs.stderr, "usage: %s\n\nflags:\n", fs.synopsis)
		fs.SetOutput(fs.stderr)
		fs.PrintDefaults()
		return err
	}
	if err != nil {
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// version is the module version when built from a tagged module, else the VCS revision the
// binary was built from, else "dev".
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev == "":
		return "dev"
	case dirty:
		return "dev-" + rev + "-dirty"
	}
	return "dev-" + rev
}

func runVersion(_ []string, stdout, _ io.Writer) error {
	fmt.Fprintln(stdout, "edgesim", version())
	return nil
}
