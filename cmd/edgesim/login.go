package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/edgesim/edgesim/driver"
)

// clientOptions are the flags 'login' and 'load' share: how to reach and trust the edge.
type clientOptions struct {
	dns, ca, password, sipMethod string
	timeout                      time.Duration
}

func (o *clientOptions) register(fs *flagSet) {
	fs.StringVar(&o.dns, "dns", "", "DNS server `HOST:PORT` to ask (default: the system resolver); 127.0.0.1:5353 for a local 'edgesim serve'")
	fs.StringVar(&o.ca, "ca", "", "trusted root certificates, PEM `FILE` (default: the system's); edgesim-data/ca.pem for a local 'edgesim serve'")
	fs.StringVar(&o.password, "password", "", "password for HTTP Basic and SASL PLAIN (default: $EDGESIM_PASSWORD, else one the simulator accepts)")
	fs.StringVar(&o.sipMethod, "sip-method", "REGISTER", "SIP request: REGISTER or OPTIONS")
	fs.DurationVar(&o.timeout, "timeout", driver.DefaultTimeout, "limit on each step")
}

// config turns the flags into a driver.Config for steps.
func (o *clientOptions) config(steps []driver.Step) (driver.Config, error) {
	cfg := driver.Config{DNS: o.dns, Steps: steps, Password: o.password, Timeout: o.timeout, SIPMethod: o.sipMethod}
	if cfg.Password == "" {
		cfg.Password = os.Getenv("EDGESIM_PASSWORD")
	}
	if o.timeout <= 0 {
		return cfg, usagef("--timeout %v: want a positive duration, like 10s", o.timeout)
	}
	if m := strings.ToUpper(o.sipMethod); m != "REGISTER" && m != "OPTIONS" {
		return cfg, usagef("--sip-method %q: want REGISTER or OPTIONS", o.sipMethod)
	}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return cfg, usagef("--ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return cfg, usagef("--ca %s holds no PEM certificate (want one or more '-----BEGIN CERTIFICATE-----' blocks)", o.ca)
		}
		cfg.Roots = pool
	}
	return cfg, nil
}

// protocolSteps maps --protocols to the steps a login runs.
func protocolSteps(list string) ([]driver.Step, error) {
	steps := []driver.Step{driver.StepSRV}
	for _, p := range strings.Split(list, ",") {
		switch strings.TrimSpace(strings.ToLower(p)) {
		case "https":
			steps = append(steps, driver.StepTLS, driver.StepIdentity, driver.StepEdgeDomain, driver.StepEdgeConfig)
		case "xmpp":
			steps = append(steps, driver.StepXMPP)
		case "sip":
			steps = append(steps, driver.StepSIP)
		default:
			return nil, usagef("--protocols: unknown protocol %q (want a list of https, xmpp, sip)", p)
		}
	}
	return steps, nil
}

// errLoginFailed ends a command whose outcome was already printed: exit 1, nothing more to say.
var errLoginFailed = errors.New("login failed")

func runLogin(args []string, stdout, stderr io.Writer) error {
	var o clientOptions
	var protocols string
	var asJSON bool
	fs := newFlagSet("login", "edgesim login [--dns HOST:PORT] [--ca FILE] [--protocols https,xmpp,sip] [--json] USER@DOMAIN", stderr)
	o.register(fs)
	fs.StringVar(&protocols, "protocols", "https,xmpp,sip", "what to try after SRV: a list of https, xmpp, sip")
	fs.BoolVar(&asJSON, "json", false, "print the trace as JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one address, like 'edgesim login --dns 127.0.0.1:5353 --ca edgesim-data/ca.pem bob@example.com'")
	}
	if _, _, err := driver.SplitAddress(pos[0]); err != nil {
		return usagef("%v", err)
	}
	steps, err := protocolSteps(protocols)
	if err != nil {
		return err
	}
	cfg, err := o.config(steps)
	if err != nil {
		return err
	}
	c, err := driver.NewClient(cfg)
	if err != nil {
		return usagef("%v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tr := c.Login(ctx, pos[0], nil)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(tr); err != nil {
			return err
		}
	} else {
		where := "the system resolver"
		if o.dns != "" {
			where = "DNS " + o.dns
		}
		fmt.Fprintf(stdout, "login %s via %s\n\n", tr.User, where)
		printTrace(stdout, tr)
	}
	if !tr.OK {
		return errLoginFailed
	}
	return nil
}

// printTrace writes one row per step and a last line with the verdict.
func printTrace(w io.Writer, tr *driver.Trace) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tTARGET\tSNI\tTIME\tVERDICT\tDETAIL")
	for _, r := range tr.Steps {
		verdict := string(r.Verdict)
		if r.Class != "" {
			verdict += " (" + string(r.Class) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Step, dash(r.Target), dash(r.SNI), fmtDuration(r.Duration, r.Verdict), verdict, r.Detail)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	if tr.OK {
		fmt.Fprintf(w, "login of %s passed every step in %s\n", tr.User, fmtDuration(tr.Elapsed, driver.Pass))
		return
	}
	r, _ := tr.Result(tr.Failed)
	fmt.Fprintf(w, "login of %s FAILED at %s (%s): %s\n", tr.User, tr.Failed, tr.Class, r.Detail)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtDuration(d time.Duration, v driver.Verdict) string {
	if v == driver.Skip {
		return "-"
	}
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}
