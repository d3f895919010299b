package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgesim/edgesim/driver"
	"github.com/edgesim/edgesim/tenant"
	"github.com/edgesim/edgesim/tenant/certdir"
)

// raceEnabled reports whether the test binary was built with -race, which makes crypto several
// times slower: the reliability tests lower their rates then, not their assertions.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rotationCerts is a certificate per synthetic tenant from one test CA, all on one shared key
// (a key per tenant would cost more than the rotation being measured).
type rotationCerts struct {
	ca     *goCA
	keyPEM []byte
	crt    [][]byte // crt[k-1]: tenant k's chain PEM
	leaf   [][]byte // leaf[k-1]: tenant k's leaf DER
}

// issueRotationCerts signs a certificate for mra.tenant-K.example and tenant-K.example, K = 1 … n,
// on every core.
func issueRotationCerts(t *testing.T, n int) *rotationCerts {
	t.Helper()
	ca := newGoCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	rc := &rotationCerts{ca: ca, keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		crt: make([][]byte, n), leaf: make([][]byte, n)}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, runtime.NumCPU())
	for range runtime.NumCPU() {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				d := tenant.SyntheticDomain(i + 1)
				tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: "mra." + d},
					DNSNames: []string{"mra." + d, d}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
					ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
				der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
				if err != nil {
					errs <- err
					return
				}
				rc.leaf[i] = der
				rc.crt[i] = append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), caPEM...)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	return rc
}

// writeSecretAtomic puts crt and key in dir/name as one atomic step: both files go into a hidden
// folder (the certificate directory skips dot entries), which is then renamed into place.
func writeSecretAtomic(dir, name string, crt, key []byte) error {
	tmp := filepath.Join(dir, ".tmp-"+name)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, certdir.KeyFile), key, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, certdir.CertFile), crt, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// secretsDir is a folder for mounted Secrets: on tmpfs, as the kubelet mounts them, when
// /dev/shm is there (10,000 folders written to this machine's ext4 disk take 7 to 16 s, on tmpfs
// 0.4 s), else in t.TempDir().
func secretsDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "edgesim-certdir-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// issuerTally counts, per login, which CA issued the certificate the identity step accepted
// (its detail says "issued by <CN>"), and when the login started against the rotation window.
type issuerTally struct {
	oldCN, newCN string

	mu                  sync.Mutex
	old, new, other     int
	failed              int
	inWindow            int // logins that started while the rotation ran
	firstFail, oldOther string
	windowFrom          time.Time // zero until the rotation starts
	windowTo            time.Time // zero until it ends
	oldAfterRotation    int       // logins that started once every tenant was new, yet saw the old CA
	newBeforeRotation   int       // logins that saw the new CA before any folder was written
}

func (it *issuerTally) record(tr *driver.Trace) {
	it.mu.Lock()
	defer it.mu.Unlock()
	if !it.windowFrom.IsZero() && !tr.Start.Before(it.windowFrom) && (it.windowTo.IsZero() || tr.Start.Before(it.windowTo)) {
		it.inWindow++
	}
	if !tr.OK {
		it.failed++
		if it.firstFail == "" {
			it.firstFail = describeTrace(tr)
		}
		return
	}
	r, _ := tr.Result(driver.StepIdentity)
	_, iss, _ := strings.Cut(r.Detail, "issued by ")
	iss, _, _ = strings.Cut(iss, ", valid until")
	switch iss {
	case it.oldCN:
		it.old++
		if !it.windowTo.IsZero() && tr.Start.After(it.windowTo) {
			it.oldAfterRotation++
		}
	case it.newCN:
		it.new++
		if it.windowFrom.IsZero() {
			it.newBeforeRotation++
		}
	default:
		it.other++
		if it.oldOther == "" {
			it.oldOther = r.Detail
		}
	}
}

// describeTrace is a login's steps on one line.
func describeTrace(tr *driver.Trace) string {
	var b strings.Builder
	for _, s := range tr.Steps {
		fmt.Fprintf(&b, "%s %s %s %s; ", s.Step, s.Verdict, s.Class, s.Detail)
	}
	return tr.User + ": " + b.String()
}

// TestRotationUnderLoad replaces the certificate of every one of 10,000 tenants through
// --cert-dir while the driver runs full TLS logins (srv, tls, identity) at a steady rate: no
// login may fail, each sees its tenant's old certificate (edgesim's CA) or its new one (the test
// CA), and once the directory is loaded every tenant is served its new certificate.
func TestRotationUnderLoad(t *testing.T) {
	tenants, rate := 10000, 300.0
	if testing.Short() {
		tenants = 2000
	}
	if raceEnabled() {
		// Race instrumentation makes handshakes and the directory's passes (reading and parsing
		// every pair) several times dearer: 10,000 tenants then take 20 s and more to rotate on
		// a busy 2-core machine. The race detector needs the concurrency, not the size.
		tenants, rate = 2000, 100
	}
	began := time.Now()
	rc := issueRotationCerts(t, tenants)
	signed := time.Since(began)

	dir := secretsDir(t)
	began = time.Now()
	s := testServer(t, "--tenants", strconv.Itoa(tenants), "--users", "1", "--cert-dir", dir, "--cert-dir-poll", "50ms",
		"--admin-addr", "")
	started := time.Since(began)
	https, _, _ := s.addrs()
	edgeCA := s.certs.Load().CA

	roots := rc.ca.pool()
	roots.AddCert(edgeCA)
	client, err := driver.NewClient(driver.Config{DNS: s.dns.Addr(), Roots: roots,
		Steps: []driver.Step{driver.StepSRV, driver.StepTLS, driver.StepIdentity}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	it := &issuerTally{oldCN: edgeCA.Subject.CommonName, newCN: rc.ca.cert.Subject.CommonName}
	runner, err := driver.NewRunner(driver.RunConfig{
		Login: func(ctx context.Context, user string, sessions tls.ClientSessionCache) *driver.Trace {
			tr := client.Login(ctx, user, sessions)
			it.record(tr)
			return tr
		},
		Users: syntheticUsers{int64(tenants), 1},
		Rate:  rate, Duration: time.Minute, // cut short once the rotation is done
		// The driver shares the process (and a busy machine) with the edge: past 100 logins
		// under way, later ones wait in the driver, their wait counted in their latency,
		// rather than piling onto the edge until its DNS answers later than the step timeout.
		MaxInFlight: 100,
		Steps:       client.Steps(), Drain: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	type runOut struct {
		res *driver.Results
		err error
	}
	ran := make(chan runOut, 1)
	go func() {
		res, err := runner.Run(ctx)
		ran <- runOut{res, err}
	}()

	time.Sleep(500 * time.Millisecond) // logins against the provisioned certificates first
	it.mu.Lock()
	it.windowFrom = time.Now()
	it.mu.Unlock()
	rotStart := time.Now()
	// In random order, so logins during the rotation meet both old and new tenants, and paced
	// over writeSpread, so the rotation spans many of the directory's passes and logins.
	const writeSpread = 2 * time.Second
	for j, i := range mrand.Perm(tenants) {
		if j%100 == 0 {
			time.Sleep(time.Until(rotStart.Add(writeSpread * time.Duration(j) / time.Duration(tenants))))
		}
		k := i + 1
		if err := writeSecretAtomic(dir, tenant.SyntheticDomain(k), rc.crt[k-1], rc.keyPEM); err != nil {
			stopLoad()
			<-ran
			t.Fatal(err)
		}
	}
	written := time.Since(rotStart)
	// Done when the SNI store holds every tenant's new certificate.
	confirmed := 0
	for deadline := time.Now().Add(30 * time.Second); confirmed < tenants; {
		c, ok := s.store.Get("mra." + tenant.SyntheticDomain(confirmed+1))
		if ok && bytes.Equal(c.Certificate[0], rc.leaf[confirmed]) {
			confirmed++
			continue
		}
		if time.Now().After(deadline) {
			stopLoad()
			<-ran
			t.Fatalf("after 30 s only tenants 1 … %d serve their new certificate", confirmed)
		}
		time.Sleep(10 * time.Millisecond) // polling the store for the certificate directory's next pass
	}
	rotation := time.Since(rotStart)
	it.mu.Lock()
	it.windowTo = time.Now()
	it.mu.Unlock()
	time.Sleep(500 * time.Millisecond) // and logins against the new ones
	stopLoad()
	out := <-ran
	if out.err != nil {
		t.Fatal(out.err)
	}
	res := out.res

	// After the rotation the new certificates are on the wire: a sample of 100 tenants,
	// verified against the test CA alone.
	newRoots := rc.ca.pool()
	sample := 100
	for i := range sample {
		k := 1 + i*(tenants/sample)
		host := "mra." + tenant.SyntheticDomain(k)
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", https,
			&tls.Config{ServerName: host, RootCAs: newRoots, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatalf("after the rotation, %s: %v", host, err)
		}
		leaf := c.ConnectionState().PeerCertificates[0]
		c.Close()
		if !bytes.Equal(leaf.Raw, rc.leaf[k-1]) {
			t.Fatalf("after the rotation, %s presented serial %s issued by %s, not its new certificate", host, leaf.SerialNumber, leaf.Issuer.CommonName)
		}
	}

	// What keeping the directory current costs with nothing changing: the process's CPU over a
	// second of polling, every other part idle.
	idleCPU := processCPU(t)
	time.Sleep(time.Second)
	idleCPU = processCPU(t) - idleCPU

	it.mu.Lock()
	defer it.mu.Unlock()
	t.Logf("idle with %d unchanged folders and --cert-dir-poll 50ms the server uses %.0f%% of a core", tenants, idleCPU.Seconds()*100)
	t.Logf("%d tenants: signed %d certificates in %v; server up in %v; folders written in %v; rotation (first write to every tenant on its new certificate) %v",
		tenants, tenants, signed.Round(time.Millisecond), started.Round(time.Millisecond), written.Round(time.Millisecond), rotation.Round(time.Millisecond))
	q := stepStats(res, driver.StepLogin).Quantiles
	t.Logf("load %.0f/s: %d requested, %d succeeded, %d failed, %d never started (login p50 %.1f ms, p99 %.1f ms, max %.1f ms); %d logins started during the rotation; issuers seen: %d old (%s), %d new (%s), %d other; %d sampled tenants serve the new certificate",
		rate, res.Totals.Requested, res.Totals.Succeeded, res.Totals.Failed-res.Errors[driver.ClassCanceled], res.Errors[driver.ClassCanceled], q.P50, q.P99, q.Max, it.inWindow, it.old, it.oldCN, it.new, it.newCN, it.other, sample)
	// Logins still waiting for a slot when the load stopped never reached the edge: they fail
	// as canceled and say the machine did not keep the rate, not that the rotation broke one.
	waiting := res.Errors[driver.ClassCanceled]
	if res.Totals.Failed-waiting != 0 || it.failed != 0 {
		t.Errorf("%d logins failed (errors %v); first: %s", res.Totals.Failed-waiting, res.Errors, it.firstFail)
	}
	if waiting > res.Totals.Requested/5 {
		t.Errorf("%d of %d logins were still waiting for a slot when the load stopped: the rate was not kept during the rotation", waiting, res.Totals.Requested)
	}
	if res.Totals.Completed != res.Totals.Requested {
		t.Errorf("totals %+v: completed != requested", res.Totals)
	}
	if it.other != 0 {
		t.Errorf("%d logins saw a certificate from neither CA, e.g. %s", it.other, it.oldOther)
	}
	if it.old == 0 || it.new == 0 {
		t.Errorf("old %d, new %d: want logins on both sides of the rotation", it.old, it.new)
	}
	if it.newBeforeRotation != 0 {
		t.Errorf("%d logins saw a new certificate before any was written", it.newBeforeRotation)
	}
	if it.oldAfterRotation != 0 {
		t.Errorf("%d logins that started after every tenant was confirmed new still saw the old certificate", it.oldAfterRotation)
	}
	if it.inWindow == 0 {
		t.Errorf("no login ran during the rotation")
	}
	if errs := gatherSum(t, s.reg, "edgesim_certdir_errors_total"); errs != 0 {
		t.Errorf("edgesim_certdir_errors_total = %v, want 0: every folder was written whole", errs)
	}
}
