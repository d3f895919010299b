// Package driver is the MRA client: it replays what Cisco Jabber does when it logs in over
// Mobile and Remote Access, against edgesim or a real Expressway-E, and measures it.
//
// A Client (NewClient) runs one login step by step and returns a Trace: SRV discovery, the SNI
// rewrite, the TLS handshake, the identity checks Jabber makes, get_edge_config, XMPP STARTTLS and
// SIP over TLS, each with a verdict and, on failure, a Class saying what went wrong. A Runner
// (NewRunner) replays logins for many users at a set arrival rate and gathers Results: HDR
// histograms per step, errors by class and a per-second series, which merge exactly across runs.
//
// The driver talks to the edge only over the network; it imports none of edgesim's server
// packages.
package driver

import (
	"fmt"
	"strings"
	"time"
)

// Step names one step of a login, as it appears in traces, histograms and --steps.
type Step string

// The steps of an MRA login, in the order a client takes them.
const (
	StepSRV        Step = "srv"         // _collab-edge._tls SRV (and _cisco-uds) and the target's address
	StepTLS        Step = "tls"         // TCP connect and TLS handshake to the HTTPS edge, SNI rewritten
	StepIdentity   Step = "identity"    // chain, validity and host name (HTTP rules: SAN dNSName, then CN)
	StepEdgeDomain Step = "edge-domain" // the service domain in the certificate's SANs (Jabber's extra check)
	StepEdgeConfig Step = "edge-config" // GET get_edge_config, parsed
	StepXMPP       Step = "xmpp"        // XMPP stream, STARTTLS, TLS, identity (XMPP rules), SASL PLAIN, bind
	StepSIP        Step = "sip"         // SIP over TLS, identity, REGISTER (or OPTIONS)
	StepLogin      Step = "login"       // the whole login, from its intended start (load runs only)
)

// Steps lists the steps a login can take, in order (StepLogin excluded).
var Steps = []Step{StepSRV, StepTLS, StepIdentity, StepEdgeDomain, StepEdgeConfig, StepXMPP, StepSIP}

// ParseSteps reads a comma-separated list of step names (--steps). "all" means every step.
func ParseSteps(s string) ([]Step, error) {
	if strings.TrimSpace(s) == "" || s == "all" {
		return append([]Step(nil), Steps...), nil
	}
	var out []Step
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ToLower(f))
		found := false
		for _, st := range Steps {
			if string(st) == f {
				found = true
				if !hasStep(out, st) {
					out = append(out, st)
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: %q (known: %s, or all)", ErrUnknownStep, f, joinSteps(Steps))
		}
	}
	// Keep call order whatever order the user wrote.
	ordered := out[:0:0]
	for _, st := range Steps {
		if hasStep(out, st) {
			ordered = append(ordered, st)
		}
	}
	return ordered, nil
}

func hasStep(list []Step, s Step) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func joinSteps(list []Step) string {
	parts := make([]string, len(list))
	for i, s := range list {
		parts[i] = string(s)
	}
	return strings.Join(parts, ",")
}

// Verdict is the outcome of one step.
type Verdict string

// Verdicts.
const (
	Pass Verdict = "pass"
	Fail Verdict = "fail"
	Skip Verdict = "skip" // not run: an earlier step failed, or the step was not asked for
)

// Class sorts a failure into what a user can act on. Classes are stable strings: they are
// metric labels and keys in results files.
type Class string

// Failure classes.
const (
	ClassNone          Class = ""
	ClassDNSTimeout    Class = "dns-timeout"     // the DNS server did not answer in time
	ClassDNSNXDomain   Class = "dns-nxdomain"    // no such name, or no SRV/address records
	ClassDNSError      Class = "dns-error"       // SERVFAIL, REFUSED, or an unusable answer
	ClassInside        Class = "inside"          // _cisco-uds._tcp answered: the client would not use MRA
	ClassConnect       Class = "connect"         // TCP connection refused or reset
	ClassTimeout       Class = "timeout"         // a connect, handshake or exchange took longer than allowed
	ClassHandshake     Class = "handshake"       // TLS alert or protocol failure during the handshake
	ClassPlatformCert  Class = "platform-cert"   // the edge presented its platform certificate, not the domain's
	ClassExpired       Class = "expired"         // the certificate is outside its validity dates
	ClassUntrusted     Class = "untrusted"       // the chain does not lead to a trusted root
	ClassNameMismatch  Class = "name-mismatch"   // the certificate does not name the host connected to
	ClassEdgeDomain    Class = "edge-domain"     // the service domain is not among the certificate's SANs
	ClassUnauthorized  Class = "unauthorized"    // HTTP 401 or SASL not-authorized: user or password refused
	ClassForbidden     Class = "forbidden"       // HTTP 403: the domain is not configured for MRA
	ClassHTTP          Class = "http"            // another HTTP status
	ClassBadEdgeConfig Class = "bad-edge-config" // get_edge_config answered something a client cannot use
	ClassXMPP          Class = "xmpp"            // the XMPP exchange went wrong
	ClassSIP           Class = "sip"             // the SIP exchange went wrong
	ClassCanceled      Class = "canceled"        // the run stopped before the login finished
)

// StepResult is one row of a trace.
type StepResult struct {
	Step     Step          `json:"step"`
	Target   string        `json:"target,omitempty"` // host:port (or name) the step talked to
	Addr     string        `json:"addr,omitempty"`   // the address it connected to, when there was one
	SNI      string        `json:"sni,omitempty"`    // server name sent in the ClientHello
	Duration time.Duration `json:"duration_ns"`
	Verdict  Verdict       `json:"verdict"`
	Class    Class         `json:"class,omitempty"`
	Detail   string        `json:"detail,omitempty"`  // a sentence for people: what was found, or what went wrong and why
	Resumed  bool          `json:"resumed,omitempty"` // the step's TLS handshake resumed a session
}

// Trace is the record of one login.
type Trace struct {
	User    string        `json:"user"`   // the address typed, user@domain
	Domain  string        `json:"domain"` // the service domain
	Start   time.Time     `json:"start"`
	Elapsed time.Duration `json:"elapsed_ns"`
	Steps   []StepResult  `json:"steps"`
	// OK is true when every step that ran passed and none was left out by a failure.
	OK bool `json:"ok"`
	// Failed is the first failing step ("" when OK); Class is its class.
	Failed Step  `json:"failed,omitempty"`
	Class  Class `json:"class,omitempty"`
}

// Result returns the row for step s, or false if the trace has none.
func (t *Trace) Result(s Step) (StepResult, bool) {
	for _, r := range t.Steps {
		if r.Step == s {
			return r, true
		}
	}
	return StepResult{}, false
}
