package tenant

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Errors from certificate provisioning.
var (
	// ErrBadKeyType: Options.KeyType or ParseKeyType got a name not in KeyTypes.
	ErrBadKeyType = errors.New("tenant: unknown key type")
	// ErrCertFiles: a tenant's cert_file/key_file (files scenario) cannot be used; the message
	// names the tenant and the file and says what is wrong.
	ErrCertFiles = errors.New("tenant: unusable cert_file/key_file")
	// ErrLocalCA: ca.pem/ca.key exist but cannot be used, and replacing them silently would
	// break every client that trusts the old ca.pem.
	ErrLocalCA = errors.New("tenant: unusable local CA")
	// ErrHostClash: two tenants derive the same SNI host, so one certificate would hide the other.
	ErrHostClash = errors.New("tenant: two tenants claim one SNI host")
)

// Names and lifetimes of provisioned certificates.
const (
	DefaultDataDir = "edgesim-data"     // Options.Dir default, relative to the working directory
	LocalCAName    = "edgesim local CA" // Subject CN of the local CA
	CAFileName     = "ca.pem"           // the CA certificate clients trust, in Options.Dir
	WrongNameHost  = "elsewhere.invalid"

	leafLifetime = 365 * 24 * time.Hour
	caLifetime   = 10 * 365 * 24 * time.Hour
	renewBefore  = 24 * time.Hour // certificates closer than this to their end are reissued
	backdate     = time.Hour      // leaves start this long before issuance, for clock skew

	platformScenario Scenario = "platform" // bundle records of the platform certificate
)

// Options configures Provision. The zero value provisions into ./edgesim-data with RSA 2048
// keys.
type Options struct {
	Dir     string           // data directory; default DefaultDataDir
	KeyType KeyType          // leaf key type; default DefaultKeyType (rsa-2048)
	KeyPool int              // distinct leaf keys shared by all tenants; default 16 (RSA), 64 (ECDSA)
	Now     func() time.Time // clock; default time.Now
	Logger  *zap.Logger      // default: no logging
}

func (o Options) resolve() (Options, error) {
	if o.Dir == "" {
		o.Dir = DefaultDataDir
	}
	kt, err := ParseKeyType(string(o.KeyType))
	if err != nil {
		return o, err
	}
	o.KeyType = kt
	switch {
	case o.KeyPool < 0:
		return o, fmt.Errorf("tenant: the key pool needs at least 1 key, got %d", o.KeyPool)
	case o.KeyPool == 0:
		o.KeyPool = kt.defaultPool()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	o.Logger = o.Logger.Named("certs")
	return o, nil
}

// Result describes what Provision loaded or made.
type Result struct {
	CAFile   string            // Dir/ca.pem, for clients to trust
	CA       *x509.Certificate // the local CA
	Platform *tls.Certificate  // for the provider edge host (the no-match fallback)
	// Expiry is the earliest NotAfter of the CA, the platform certificate and the domain
	// certificates, leaving out the expired scenario's (they are meant to be in the past).
	Expiry time.Time
	Counts map[Scenario]int // tenants per scenario; every scenario is present
	Issued int              // certificates signed by this call (CA and platform included)
	Reused int              // certificates loaded from Dir as they were
}

// Provision makes (or reloads from opts.Dir) the local CA, the platform certificate and every
// tenant's domain certificate, and calls add(host, cert) once per SNI host name that gets a domain
// certificate ("*.<domain>" for the wildcard scenario; none for missing). add may be nil.
//
// The local CA's key is ECDSA P-256 whatever opts.KeyType says: signing is the per-tenant cost of
// a cold start, and an ECDSA signature takes tens of microseconds where an RSA 2048 one takes
// about a millisecond (RSA 4096 several), so 100k tenants are signed in seconds rather than
// minutes. Leaf keys come from a pool of opts.KeyPool keys of opts.KeyType, generated once and
// shared: the i-th tenant in Directory order uses pool key i mod KeyPool. Issued certificates are
// stored in opts.Dir and reused by later calls while the key type, the CA and the pool key are
// unchanged and more than a day of validity is left; damaged files are rewritten, never fatal.
// Certificates are issued on runtime.NumCPU goroutines. The layout of opts.Dir:
//
//	ca.pem, ca.key                  the local CA (clients trust ca.pem)
//	keys/<key type>/NNN.key         the leaf key pool, PEM PKCS#8
//	certs/<key type>/platform.pem   the platform certificate
//	certs/<key type>/00.pem…ff.pem  domain certificates in 256 bundles, by a hash of the domain
//
// Keys are mode 0600 and folders 0700. Files are replaced through a temporary file and a rename.
//
// add is called from the calling goroutine, never concurrently, in no particular order; the
// tls.Certificate values share the pool's key objects and have no Leaf (except the files
// scenario's), to keep a million of them light for the garbage collector. On error add may already
// have been called for some hosts. Provision must not run twice at once on one Dir.
func Provision(d Directory, opts Options, add func(host string, cert *tls.Certificate)) (*Result, error) {
	o, err := opts.resolve()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	p := &provisioner{o: o, now: o.Now(), log: o.Logger, provider: d.Provider()}
	keyDir := filepath.Join(o.Dir, "keys", string(o.KeyType))
	p.certDir = filepath.Join(o.Dir, "certs", string(o.KeyType))
	for _, dir := range []string{o.Dir, filepath.Join(o.Dir, "keys"), keyDir, filepath.Join(o.Dir, "certs"), p.certDir} {
		if err := mkdirPrivate(dir, dir != o.Dir); err != nil {
			return nil, err
		}
		removeTemps(dir)
	}
	res := &Result{CAFile: filepath.Join(o.Dir, CAFileName), Counts: make(map[Scenario]int, len(Scenarios))}
	for _, sc := range Scenarios {
		res.Counts[sc] = 0
	}

	var caIssued bool
	if p.ca, caIssued, err = loadCA(o.Dir, p.now, p.log); err != nil {
		return nil, err
	}
	res.CA, res.Expiry = p.ca.cert, p.ca.cert.NotAfter
	if caIssued {
		res.Issued++
	}
	p.header = bundleHeader(o.KeyType, p.ca.id)

	t0 := time.Now()
	pool, generated, err := loadPool(keyDir, o.KeyType, o.KeyPool, p.log)
	if err != nil {
		return nil, err
	}
	p.pool = pool
	if generated > 0 {
		p.log.Info("generated leaf keys", zap.String("key_type", string(o.KeyType)), zap.Int("keys", generated),
			zap.Duration("elapsed", time.Since(t0)))
	}

	plat := p.bundle(filepath.Join(p.certDir, "platform.pem"),
		[]want{{domain: p.provider.Domain, host: p.provider.EdgeHost, sc: platformScenario}})
	if plat.err != nil {
		return nil, plat.err
	}
	res.Platform = plat.certs[0].cert
	res.Issued += plat.issued
	res.Reused += plat.reused
	res.Expiry = earliest(res.Expiry, plat.certs[0].notAfter)

	// Group tenants by bundle shard, then let NumCPU workers take whole shards.
	shards := make([][]job, bundleShards)
	n := 0
	d.Each(func(t *Tenant) bool {
		s := shardOf(t.Domain)
		shards[s] = append(shards[s], job{t: t, i: n})
		res.Counts[scenarioOf(t)]++
		n++
		return true
	})
	results := make(chan shardResult, runtime.NumCPU())
	next := make(chan int)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range next {
				if stop.Load() {
					results <- shardResult{}
					continue
				}
				results <- p.shard(s, shards[s])
			}
		}()
	}
	go func() {
		for s := range bundleShards {
			next <- s
		}
		close(next)
		wg.Wait()
		close(results)
	}()

	var errs []error
	owner := make(map[string]string, n)
	hosts := 0
	for r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
			if !errors.Is(r.err, ErrCertFiles) {
				stop.Store(true)
			}
		}
		if r.damaged {
			p.log.Warn("rewrote damaged certificate bundle", zap.String("file", r.path))
		}
		res.Issued += r.issued
		res.Reused += r.reused
		for _, e := range r.entries {
			if prev, dup := owner[e.host]; dup {
				errs = append(errs, fmt.Errorf("%w: %s and %s both give SNI host %s; change one's edge_host or srv targets", ErrHostClash, prev, e.domain, e.host))
				stop.Store(true)
				continue
			}
			owner[e.host] = e.domain
			if e.sc != Expired {
				res.Expiry = earliest(res.Expiry, e.notAfter)
			}
			if add != nil {
				add(e.host, e.cert)
			}
			hosts++
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	p.log.Info("certificates ready", zap.Int("tenants", n), zap.Int("hosts", hosts), zap.Int("issued", res.Issued),
		zap.Int("reused", res.Reused), zap.String("key_type", string(o.KeyType)), zap.Duration("elapsed", time.Since(start)))
	return res, nil
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// joinErrors joins errs, keeping the message short when there are many.
func joinErrors(errs []error) error {
	const show = 5
	if len(errs) <= show {
		return errors.Join(errs...)
	}
	return errors.Join(append(errs[:show:show], fmt.Errorf("… and %d more errors", len(errs)-show))...)
}

type provisioner struct {
	o        Options
	now      time.Time
	log      *zap.Logger
	provider Provider
	ca       *authority
	pool     *keyPool
	certDir  string
	header   string
}

type job struct {
	t *Tenant
	i int // position in Directory order: picks the pool key
}

// want is one certificate a bundle should hold.
type want struct {
	domain, host string
	sc           Scenario
	key          int // pool key index for a new certificate
}

type entry struct {
	domain, host string
	sc           Scenario
	cert         *tls.Certificate
	notAfter     time.Time
}

// scenarioOf is t's scenario, valid if unset (a Directory built without Config.Directory).
func scenarioOf(t *Tenant) Scenario {
	if t.Certificate == "" {
		return Valid
	}
	return t.Certificate
}

type shardResult struct {
	path           string
	entries        []entry
	issued, reused int
	damaged        bool
	err            error
}

// shard provisions the tenants of one bundle shard.
func (p *provisioner) shard(s int, jobs []job) shardResult {
	var wants []want
	var files []entry
	var errs []error
	for _, j := range jobs {
		t := j.t
		switch sc := scenarioOf(t); sc {
		case Missing:
		case Files:
			c, err := loadFiles(t)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, h := range t.SNIHosts(p.provider) {
				files = append(files, entry{domain: t.Domain, host: h, sc: Files, cert: c, notAfter: c.Leaf.NotAfter})
			}
		case Wildcard:
			wants = append(wants, want{domain: t.Domain, host: "*." + t.Domain, sc: Wildcard, key: j.i})
		case Valid, Expired, WrongName, CNOnly, SelfSigned:
			for _, h := range t.SNIHosts(p.provider) {
				wants = append(wants, want{domain: t.Domain, host: h, sc: sc, key: j.i})
			}
		default:
			errs = append(errs, fmt.Errorf("%s: %w %q (want one of %s)", t.Domain, ErrBadScenario, sc, scenarioList()))
		}
	}
	r := p.bundle(filepath.Join(p.certDir, shardFile(s)), wants)
	if r.err != nil {
		errs = append(errs, r.err)
	}
	r.err = joinErrors(errs)
	r.entries = make([]entry, 0, len(wants)+len(files))
	for i, w := range wants {
		if i < len(r.certs) {
			r.entries = append(r.entries, entry{domain: w.domain, host: w.host, sc: w.sc, cert: r.certs[i].cert, notAfter: r.certs[i].notAfter})
		}
	}
	r.entries = append(r.entries, files...)
	return r.shardResult
}

type bundleResult struct {
	shardResult
	certs []servedCert // one per want, in order
}

// servedCert is a certificate ready to serve and when it ends. Leaf is left nil: the TLS server
// does not need it, and a parsed x509.Certificate per tenant (about 1 KiB of pointer-rich heap)
// was most of the heap the garbage collector marked at a million tenants.
type servedCert struct {
	cert     *tls.Certificate
	notAfter time.Time
}

// bundle returns a certificate for each want, reusing those stored in the bundle at path and
// issuing the others, and rewrites the bundle if anything changed.
func (p *provisioner) bundle(path string, wants []want) bundleResult {
	r := bundleResult{shardResult: shardResult{path: path}}
	buf := readBuffers.Get().(*bytes.Buffer)
	defer readBuffers.Put(buf)
	data, err := readOptionalInto(buf, path)
	if err != nil {
		r.err = fmt.Errorf("tenant: read certificates: %w", err)
		return r
	}
	var stored []record
	var byKey map[string][]byte // built only when the records are not in the order of wants
	dirty := data != nil && len(wants) == 0
	if data != nil {
		var intact bool
		stored, intact = parseBundle(data, p.header)
		// A bundle made for another CA is outdated, not damaged.
		first, _ := cutLine(data)
		outdated := string(first) != p.header && bytes.HasPrefix(first, []byte("# "+bundleFormat+" "))
		r.damaged = !intact && !outdated
		dirty = dirty || !intact || len(stored) != len(wants)
	}
	r.certs = make([]servedCert, 0, len(wants))
	recs := make([]record, 0, len(wants))
	slab := certSlab{want: len(wants)}
	for i, w := range wants {
		var der []byte
		switch {
		case i < len(stored) && byKey == nil && stored[i].domain == w.domain && stored[i].host == w.host && stored[i].scenario == w.sc:
			der = stored[i].der // the usual case: the bundle as this loop wrote it
		case len(stored) > 0:
			if byKey == nil {
				byKey = make(map[string][]byte, len(stored))
				for _, rec := range stored {
					if _, dup := byKey[rec.key()]; dup {
						dirty = true
					}
					byKey[rec.key()] = rec.der
				}
			}
			der = byKey[recordKey(w.domain, w.host, w.sc)]
			dirty = true // rewritten in order
		}
		var c servedCert
		if der != nil {
			c.cert, c.notAfter = p.reuse(&slab, der, w)
		}
		if c.cert != nil {
			r.reused++
		} else {
			if c, err = p.issue(&slab, w); err != nil {
				r.err = err
				return r
			}
			r.issued++
			dirty = true
		}
		r.certs = append(r.certs, c)
		recs = append(recs, record{domain: w.domain, host: w.host, scenario: w.sc, der: c.cert.Certificate[0]})
	}
	switch {
	case !dirty:
	case len(recs) == 0:
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.err = fmt.Errorf("tenant: remove stale certificates: %w", err)
		}
	default:
		r.err = writeBundle(path, p.header, recs)
	}
	return r
}

// names returns the Subject CN and SAN dNSNames a certificate for w carries.
func names(w want) (cn string, sans []string) {
	switch w.sc {
	case WrongName:
		return WrongNameHost, []string{WrongNameHost}
	case CNOnly:
		return w.host, nil
	case platformScenario:
		return w.host, []string{w.host}
	}
	// The service domain goes in too: Jabber's extra check (DESIGN.md).
	if w.host == w.domain {
		return w.host, []string{w.host}
	}
	return w.host, []string{w.host, w.domain}
}

// reuse returns the stored certificate der for w, or nil if it must be issued again: it must be
// signed by the current CA (or self-signed, for that scenario), for a key of the pool, valid now
// for more than renewBefore (expired, for that scenario), carry exactly the names w gets, and be
// whole (see storedCert). Like x509.ParseCertificate before it, this does not check signatures.
func (p *provisioner) reuse(slab *certSlab, der []byte, w want) (*tls.Certificate, time.Time) {
	c, err := readStoredCert(der)
	if err != nil {
		return nil, time.Time{}
	}
	key, ok := p.pool.lookup(c.rawSPKI)
	if !ok {
		return nil, time.Time{}
	}
	if w.sc == SelfSigned {
		if !bytes.Equal(c.rawIssuer, c.rawSubject) {
			return nil, time.Time{}
		}
	} else if !bytes.Equal(c.rawIssuer, p.ca.cert.RawSubject) || !bytes.Equal(c.authorityKeyID, p.ca.cert.SubjectKeyId) {
		return nil, time.Time{}
	}
	if w.sc == Expired {
		if !c.notAfter.Before(p.now) {
			return nil, time.Time{}
		}
	} else if p.now.Before(c.notBefore) || c.notAfter.Sub(p.now) <= renewBefore {
		return nil, time.Time{}
	}
	cn, sans := names(w)
	if c.commonName != cn || !slices.Equal(c.dnsNames, sans) {
		return nil, time.Time{}
	}
	return p.wrap(slab, der, key, w.sc), c.notAfter
}

// issue signs a new certificate for w with pool key w.key mod the pool size.
func (p *provisioner) issue(slab *certSlab, w want) (servedCert, error) {
	key := p.pool.keys[w.key%len(p.pool.keys)]
	serial, err := randomSerial()
	if err != nil {
		return servedCert{}, err
	}
	cn, sans := names(w)
	notBefore := p.now.Add(-backdate)
	notAfter := notBefore.Add(leafLifetime)
	if w.sc == Expired {
		notAfter = p.now.Add(-24 * time.Hour)
		notBefore = notAfter.Add(-leafLifetime)
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := key.(*rsa.PrivateKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              sans,
	}
	parent, signer := p.ca.cert, p.ca.key
	if w.sc == SelfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return servedCert{}, fmt.Errorf("tenant: issue certificate for %s: %w", w.host, err)
	}
	return servedCert{p.wrap(slab, der, key, w.sc), notAfter}, nil
}

// wrap makes the served certificate: the leaf der and the CA (none for a self-signed leaf),
// cut from slab's blocks.
func (p *provisioner) wrap(slab *certSlab, der []byte, key crypto.Signer, sc Scenario) *tls.Certificate {
	if len(slab.certs) == cap(slab.certs) {
		n := min(max(slab.want, 1), certSlabLen)
		*slab = certSlab{certs: make([]tls.Certificate, 0, n), chains: make([][]byte, 0, 2*n), want: slab.want}
	}
	slab.want--
	n := len(slab.chains)
	slab.chains = append(slab.chains, der, p.ca.cert.Raw)
	chain := slab.chains[n : n+2 : n+2]
	if sc == SelfSigned {
		chain = chain[:1:1]
	}
	slab.certs = append(slab.certs, tls.Certificate{Certificate: chain, PrivateKey: key})
	return &slab.certs[len(slab.certs)-1]
}

// certSlab hands out tls.Certificate values and their chains from blocks of certSlabLen: a
// million certificates as a few thousand allocations instead of two million.
type certSlab struct {
	certs  []tls.Certificate
	chains [][]byte
	want   int // certificates still to come, to size the next block
}

const certSlabLen = 256

// randomSerial returns a random positive serial number of up to 128 bits.
func randomSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("tenant: serial number: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}
