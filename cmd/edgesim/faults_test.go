package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/edgesim/edgesim/driver"
)

// The fault tests break one part of a running system on purpose (the DNS, the edge listeners,
// the process itself) and check that the driver and the server report it and carry on.

// startFaultServer starts the whole of 'edgesim serve' in-process like testServer, with the admin
// API off unless args say otherwise. Its clean-up ignores shutdown errors: a fault test stops
// parts of the server itself, and stopping them again is refused.
func startFaultServer(t *testing.T, args ...string) *server {
	t.Helper()
	var o serveOptions
	fs := newFlagSet("serve", "", io.Discard)
	o.register(fs)
	all := append([]string{"--data", t.TempDir(), "--key-type", "ecdsa-p256",
		"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0",
		"--dns-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0", "--admin-addr", "", "--handshake-timeout", "5s"}, args...)
	if err := fs.parse(all); err != nil {
		t.Fatal(err)
	}
	s, err := startServer(o, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.shutdown(ctx)
	})
	return s
}

// faultLogin is one line of --logins-out.
type faultLogin struct {
	User   string       `json:"user"`
	Start  time.Time    `json:"start"`
	MS     float64      `json:"ms"`
	OK     bool         `json:"ok"`
	Failed driver.Step  `json:"failed"`
	Class  driver.Class `json:"class"`
}

func readLoginsOut(t *testing.T, path string) []faultLogin {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []faultLogin
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var l faultLogin
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("--logins-out line %q: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

// checkTotals fails unless the results add up: every login due was requested and completed,
// completed = succeeded + failed, and the errors by class add up to the failures.
func checkTotals(t *testing.T, res *driver.Results, want int64, lines []faultLogin) {
	t.Helper()
	tot := res.Totals
	var byClass int64
	for _, n := range res.Errors {
		byClass += n
	}
	if tot.Requested != want || tot.Completed != want || tot.Succeeded+tot.Failed != tot.Completed || byClass != tot.Failed {
		t.Errorf("totals %+v, errors %v: want %d requested and completed, succeeded + failed = completed, errors adding up to failed", tot, res.Errors, want)
	}
	if int64(len(lines)) != want {
		t.Errorf("--logins-out has %d lines, want %d", len(lines), want)
	}
}

// TestFaultDNSStopped stops the edge's DNS a second into a 4 s open-model run. The run goes on to
// its end; logins after the stop fail at srv, each within --timeout, and say why.
func TestFaultDNSStopped(t *testing.T) {
	const rate, seconds, timeout = 100, 4, time.Second
	s := startFaultServer(t, "--tenants", "20", "--users", "5")
	dnsAddr := s.dns.Addr()
	dir := t.TempDir()
	out, logins := filepath.Join(dir, "results.json"), filepath.Join(dir, "logins.jsonl")

	var stopBegin, stopEnd time.Time
	stopped := make(chan error, 1)
	time.AfterFunc(time.Second, func() {
		stopBegin = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.dns.Shutdown(ctx)
		stopEnd = time.Now()
		stopped <- err
	})
	var stdout, stderr bytes.Buffer
	began := time.Now()
	code := run([]string{"load", "--dns", dnsAddr, "--ca", s.certs.Load().CAFile, "--tenants", "20", "--users", "5",
		"--rate", strconv.Itoa(rate), "--duration", strconv.Itoa(seconds) + "s", "--steps", "srv,tls",
		"--timeout", timeout.String(), "--drain", "5s", "--progress", "off", "--out", out, "--logins-out", logins}, &stdout, &stderr)
	took := time.Since(began)
	if err := <-stopped; err != nil {
		t.Fatalf("stopping the DNS: %v", err)
	}
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	res, lines := readResults(t, out), readLoginsOut(t, logins)
	checkTotals(t, res, rate*seconds, lines)

	var before, beforeOK, after, refused, timedOut, other int
	var maxMS float64
	for _, l := range lines {
		maxMS = max(maxMS, l.MS)
		switch {
		case l.Start.Before(stopBegin.Add(-50 * time.Millisecond)):
			before++
			if l.OK {
				beforeOK++
			}
		case l.Start.After(stopEnd.Add(50 * time.Millisecond)):
			after++
			switch {
			case l.OK || l.Failed != driver.StepSRV:
				other++
			case l.Class == driver.ClassDNSError:
				refused++
			case l.Class == driver.ClassDNSTimeout:
				timedOut++
			default:
				other++
			}
		}
	}
	// One login traced after the stop shows what a user reads.
	client, err := driver.NewClient(driver.Config{DNS: dnsAddr, Steps: []driver.Step{driver.StepSRV, driver.StepTLS}, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	tr := client.Login(context.Background(), "user1@tenant-1.example", nil)
	srv, _ := tr.Result(driver.StepSRV)
	q := stepStats(res, driver.StepLogin).Quantiles

	t.Logf("DNS stopped %v into the run (took %v); run %v for %d requested, %d succeeded, %d failed %v",
		stopBegin.Sub(began).Round(time.Millisecond), stopEnd.Sub(stopBegin).Round(time.Millisecond), took.Round(time.Millisecond),
		res.Totals.Requested, res.Totals.Succeeded, res.Totals.Failed, res.Errors)
	t.Logf("before the stop %d/%d succeeded; after it %d logins: %d dns-error (refused), %d dns-timeout, %d other; slowest login %.1f ms (--timeout %v), login p99 %.1f ms from intended start",
		beforeOK, before, after, refused, timedOut, other, maxMS, timeout, q.P99)
	t.Logf("a login after the stop: %s %s: %s", srv.Verdict, srv.Class, srv.Detail)

	if beforeOK != before || before < 50 {
		t.Errorf("before the stop %d of %d logins succeeded, want all of about 100", beforeOK, before)
	}
	if after < 200 || other != 0 {
		t.Errorf("after the stop: %d logins, %d not failing at srv with a DNS class; want about 300, all dns-error or dns-timeout", after, other)
	}
	// UDP to a closed port on loopback is answered with ICMP port unreachable: the driver says
	// nothing answers (dns-error) at once instead of waiting out its timeout.
	if refused == 0 {
		t.Errorf("no login after the stop was reported as refused (dns-error)")
	}
	if srv.Verdict != driver.Fail || srv.Class != driver.ClassDNSError || !strings.Contains(srv.Detail, "nothing answers DNS on "+dnsAddr) {
		t.Errorf("after the stop the srv step says %s %s %q; want dns-error saying nothing answers DNS on %s", srv.Verdict, srv.Class, srv.Detail, dnsAddr)
	}
	// Bounded by one --timeout: the srv step's queries share it (a timeout per query, or a
	// resend after it, would show as two or three).
	if maxMS >= float64((2 * timeout).Milliseconds()) {
		t.Errorf("the slowest login took %.0f ms: want every login bounded by --timeout %v", maxMS, timeout)
	}
	if took > seconds*time.Second+timeout+2*time.Second {
		t.Errorf("the run took %v for a %d s duration", took, seconds)
	}
	if !strings.Contains(stdout.String(), string(driver.ClassDNSError)) && !strings.Contains(stdout.String(), string(driver.ClassDNSTimeout)) {
		t.Errorf("the summary does not show the DNS errors:\n%s", stdout.String())
	}
}

// freeTCPPort returns a loopback port that was free a moment ago.
func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestFaultEdgeRestart shuts the edge listeners down a second into a run and, after a gap,
// starts a new server on the same ports and data directory (the first server's DNS keeps
// answering). Logins in the gap fail as connect (or handshake) errors, the run goes on, and
// logins after the restart succeed again with the same CA.
func TestFaultEdgeRestart(t *testing.T) {
	const rate, seconds, gap = 100, 4, 500 * time.Millisecond
	data := t.TempDir()
	edgeAddrs := []string{"--https-addr", fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t)),
		"--xmpp-addr", fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t)), "--sip-addr", fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))}
	first := startFaultServer(t, append([]string{"--data", data, "--tenants", "20", "--users", "5"}, edgeAddrs...)...)
	dir := t.TempDir()
	out, logins := filepath.Join(dir, "results.json"), filepath.Join(dir, "logins.jsonl")

	var downBegin, downEnd, upBegin, upEnd time.Time
	restarted := make(chan *server, 1)
	var restartErr error
	time.AfterFunc(time.Second, func() {
		defer close(restarted)
		downBegin = time.Now()
		// As on SIGTERM: stop accepting, drain what is in flight for a while, close the rest.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if err := first.edge.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			restartErr = fmt.Errorf("edge shutdown: %w", err)
			return
		}
		downEnd = time.Now()
		time.Sleep(gap) // the edge is down
		upBegin = time.Now()
		var o serveOptions
		fs := newFlagSet("serve", "", io.Discard)
		o.register(fs)
		args := append([]string{"--data", data, "--key-type", "ecdsa-p256", "--tenants", "20", "--users", "5",
			"--dns-addr", "127.0.0.1:0", "--metrics-addr", "", "--admin-addr", ""}, edgeAddrs...)
		if err := fs.parse(args); err != nil {
			restartErr = err
			return
		}
		s, err := startServer(o, zap.NewNop(), prometheus.NewRegistry())
		if err != nil {
			restartErr = fmt.Errorf("restart on the same ports: %w", err)
			return
		}
		upEnd = time.Now()
		restarted <- s
	})
	var stdout, stderr bytes.Buffer
	began := time.Now()
	code := run([]string{"load", "--dns", first.dns.Addr(), "--ca", filepath.Join(data, "ca.pem"), "--tenants", "20", "--users", "5",
		"--rate", strconv.Itoa(rate), "--duration", strconv.Itoa(seconds) + "s", "--steps", "srv,tls,identity",
		"--timeout", "1s", "--drain", "5s", "--progress", "off", "--out", out, "--logins-out", logins}, &stdout, &stderr)
	took := time.Since(began)
	second, ok := <-restarted
	if !ok {
		t.Fatalf("restart: %v", restartErr)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = second.shutdown(ctx)
	})
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	res, lines := readResults(t, out), readLoginsOut(t, logins)
	checkTotals(t, res, rate*seconds, lines)

	var before, beforeOK, inGap, gapFailed, after, afterOK int
	classes := map[driver.Class]int{}
	for _, l := range lines {
		if !l.OK {
			classes[l.Class]++
		}
		switch {
		case l.Start.Before(downBegin.Add(-50 * time.Millisecond)):
			before++
			if l.OK {
				beforeOK++
			}
		case l.Start.After(downEnd) && l.Start.Before(upBegin):
			inGap++
			if !l.OK {
				gapFailed++
			}
		case l.Start.After(upEnd.Add(50 * time.Millisecond)):
			after++
			if l.OK {
				afterOK++
			}
		}
	}
	t.Logf("edge down %v into the run (shutdown took %v), gap %v, new server up in %v; run %v: %d requested, %d succeeded, %d failed %v",
		downBegin.Sub(began).Round(time.Millisecond), downEnd.Sub(downBegin).Round(time.Millisecond), upBegin.Sub(downEnd).Round(time.Millisecond),
		upEnd.Sub(upBegin).Round(time.Millisecond), took.Round(time.Millisecond), res.Totals.Requested, res.Totals.Succeeded, res.Totals.Failed, res.Errors)
	t.Logf("before: %d/%d succeeded; in the gap: %d/%d failed; after the restart: %d/%d succeeded", beforeOK, before, gapFailed, inGap, afterOK, after)

	if beforeOK != before || before < 50 {
		t.Errorf("before the shutdown %d of %d logins succeeded, want all of about 100", beforeOK, before)
	}
	if inGap < 20 || gapFailed != inGap {
		t.Errorf("in the gap %d of %d logins failed, want all of about %d", gapFailed, inGap, int(gap.Seconds()*rate))
	}
	if after < 30 || afterOK != after {
		t.Errorf("after the restart %d of %d logins succeeded, want all", afterOK, after)
	}
	for c := range classes {
		if c != driver.ClassConnect && c != driver.ClassHandshake {
			t.Errorf("failures of class %s (%v): want connect or handshake only", c, classes)
		}
	}
}

// childServe runs 'edgesim serve' as a process of its own (the test binary, see TestMain) and
// returns it once its banner is out, with the HTTPS address from the banner.
type childServe struct {
	cmd    *exec.Cmd
	https  string
	stderr *lockedBuffer
	exited chan error
}

// (lockedBuffer is handshake_child_test.go's.)

func startChildServe(t *testing.T, args ...string) *childServe {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--key-type", "ecdsa-p256",
		"--https-addr", "127.0.0.1:0", "--xmpp-addr", "127.0.0.1:0", "--sip-addr", "127.0.0.1:0",
		"--dns-addr", "127.0.0.1:0", "--metrics-addr", "", "--log-level", "warn"}, args...)...)
	cmd.Env = append(os.Environ(), benchChildEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &childServe{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.exited
	})
	banner := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		httpsRE := regexp.MustCompile(`^\s+https\s+(\S+)`)
		https := ""
		for sc.Scan() {
			if m := httpsRE.FindStringSubmatch(sc.Text()); m != nil {
				https = m[1]
			}
			if strings.Contains(sc.Text(), benchBannerEnd) {
				banner <- https
				break
			}
		}
		close(banner)
		for sc.Scan() {
		}
		c.exited <- cmd.Wait()
	}()
	select {
	case h, ok := <-banner:
		if !ok || h == "" {
			err := <-c.exited
			c.exited <- err
			t.Fatalf("edgesim serve did not start (%v); stderr:\n%s", err, c.stderr.String())
		}
		c.https = h
	case <-time.After(30 * time.Second):
		t.Fatalf("no banner within 30 s; stderr:\n%s", c.stderr.String())
	}
	return c
}

// uploadCert is one certificate and key for PUT /api/v1/domains/<d>/certificate.
type uploadCert struct {
	body   []byte
	serial string // decimal
}

func newUploadCerts(t *testing.T, ca *goCA, n int, names ...string) []uploadCert {
	t.Helper()
	out := make([]uploadCert, n)
	for i := range out {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		chain, leaf := ca.signFor(t, &key.PublicKey, pkix.Name{CommonName: names[0]}, names)
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(map[string]string{"certificate": string(chain),
			"key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))})
		out[i] = uploadCert{body: body, serial: leaf.SerialNumber.String()}
	}
	return out
}

// TestFaultKillDuringUpload uploads certificates for a domain through the admin API in a loop
// and kills the server (SIGKILL) at a random moment, three times. Each restart on the same data
// directory must come up, and serve the last certificate acknowledged before the kill or the one
// whose upload the kill cut short: never an older one, a broken pair, or nothing.
func TestFaultKillDuringUpload(t *testing.T) {
	const domain, host, rounds = "example.com", "mra.example.com", 3
	data := t.TempDir()
	admin := fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t))
	args := []string{"--data", data, "--admin-addr", admin}
	ca := newGoCA(t)
	api := "http://" + admin + "/api/v1/domains"
	hc := &http.Client{Timeout: 5 * time.Second}

	child := startChildServe(t, args...)
	resp, err := hc.Post(api, "application/json", strings.NewReader(`{"domain": "`+domain+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("adding %s: %s", domain, resp.Status)
	}
	lastAcked := "" // serial of the last upload answered 200, over all rounds
	for round := 1; round <= rounds; round++ {
		certs := newUploadCerts(t, ca, 50, host, domain)
		var (
			acked    []string
			inFlight string
			loopErr  error
		)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				c := certs[i%len(certs)]
				inFlight = c.serial
				req, _ := http.NewRequest(http.MethodPut, api+"/"+domain+"/certificate", bytes.NewReader(c.body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					loopErr = err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					loopErr = fmt.Errorf("upload %d: %s: %s", i, resp.Status, b)
					return
				}
				acked = append(acked, c.serial)
				inFlight = ""
			}
		}()
		killAfter := time.Duration(50+mrand.IntN(300)) * time.Millisecond
		time.Sleep(killAfter) // the random moment of the kill
		if err := child.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		exit := <-child.exited
		child.exited <- exit // for the clean-up
		<-done
		if len(acked) > 0 {
			lastAcked = acked[len(acked)-1]
		}
		if loopErr == nil || strings.Contains(loopErr.Error(), "upload ") {
			t.Fatalf("round %d: the upload loop ended with %v, want a connection error from the kill", round, loopErr)
		}

		began := time.Now()
		child = startChildServe(t, args...)
		restart := time.Since(began)
		hc.CloseIdleConnections()
		// Not verified, so that a provisioned certificate would show too; the handshake still
		// proves the server holds the key of the certificate it presents.
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", child.https,
			&tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("round %d: handshake with %s after the restart: %v\nstderr:\n%s", round, host, err, child.stderr.String())
		}
		leaf := c.ConnectionState().PeerCertificates[0]
		c.Close()
		served := leaf.SerialNumber.String()
		which := "the last acknowledged upload"
		switch {
		case served == lastAcked:
		case served == inFlight && inFlight != "":
			which = "the upload cut short"
			lastAcked = served // it is now what the server holds
		case lastAcked == "" && leaf.Issuer.CommonName != ca.cert.Subject.CommonName:
			which = "the provisioned certificate (nothing acknowledged yet)"
		default:
			t.Fatalf("round %d: after the kill %s serves serial %s; want the last acknowledged %s or the one in flight %q",
				round, host, served, lastAcked, inFlight)
		}
		// The admin API tells the same story as the wire.
		resp, err := hc.Get(api + "/" + domain + "/certificate")
		if err != nil {
			t.Fatal(err)
		}
		var shown struct {
			Serial string `json:"serial"`
		}
		err = json.NewDecoder(resp.Body).Decode(&shown)
		resp.Body.Close()
		if lastAcked != "" && (err != nil || shown.Serial != fmt.Sprintf("%X", leaf.SerialNumber)) {
			t.Fatalf("round %d: the API shows serial %q (%v), the edge serves %X", round, shown.Serial, err, leaf.SerialNumber)
		}
		t.Logf("round %d: killed %v into the loop (%s) after %d acknowledged uploads; restarted in %v; serves %s; warnings: %q",
			round, killAfter, exit, len(acked), restart.Round(time.Millisecond), which, strings.TrimSpace(child.stderr.String()))
	}
}
