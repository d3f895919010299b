// Package certdir serves TLS certificates from a directory laid out the way Kubernetes mounts
// Secrets of type kubernetes.io/tls: one folder per certificate, DIR/<name>/tls.crt (the PEM
// chain, leaf first) and DIR/<name>/tls.key (its PEM private key), as cert-manager issues them.
//
// The folder name is only a name: a certificate is installed for every dNSName in its Subject
// Alternative Names ("*.example.com" for a wildcard), since cert-manager Certificate and Secret
// names are arbitrary and the SANs are what a client checks. The Subject CN and IP SANs are not
// used. When several folders carry the same name, the certificate that expires last serves it
// (ties: the folder that sorts first); a name carried as such by one folder beats the hosts a
// wildcard is spread onto (Config.WildcardHosts).
//
// The directory is read again every Config.Poll and a folder is reloaded when the content of
// its files changes. Kubernetes updates a mounted Secret atomically: the kubelet writes the new
// files into a fresh DIR/<name>/..<timestamp> folder and renames a "..data" symlink onto it, and
// tls.crt and tls.key are symlinks through ..data. Entries whose names start with a dot (..data,
// ..<timestamp>) are never taken for certificate folders, and the ..data links are read before
// and after the files so a pair is never assembled from two updates. A pair that cannot be used
// (unreadable, not PEM, a key that does not belong to the certificate, no DNS names) leaves the
// folder's last good certificate in use and is reported once (zap warning with the folder and
// the reason, edgesim_certdir_errors_total{reason}). While polling, a failing content is
// reported only when the next poll finds it unchanged: a pair caught half-written by a writer
// that replaces the files one by one (tls.crt new, tls.key old) is retried quietly, never
// installed. An expired or not yet valid certificate is loaded and reported. A folder that
// disappears takes its names out (Config.Remove); a directory that cannot be read while polling
// keeps everything loaded. No log line or error holds key material.
package certdir

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// DefaultPoll is how often the directory is read again when Config.Poll is zero.
const DefaultPoll = 2 * time.Second

// The file names in each folder, as in a kubernetes.io/tls Secret.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// Errors returned by the package.
var (
	// ErrDir is wrapped by errors from New, Load and Start when the directory cannot be read.
	ErrDir = errors.New("certdir: cannot read the certificate directory")
	// ErrConfig is wrapped by errors from New for a Config it cannot work with.
	ErrConfig = errors.New("certdir: bad configuration")
	// ErrStarted is returned by Start on a Source already started.
	ErrStarted = errors.New("certdir: already started")
)

// Config configures New. Dir and Install are required; the zero value of every other field
// means its default.
type Config struct {
	// Dir holds one folder per certificate: Dir/<name>/tls.crt and Dir/<name>/tls.key.
	Dir string
	// Poll is how often Dir is read again; default DefaultPoll.
	Poll time.Duration
	// Install serves c for host: a normalised DNS name, or "*.parent" for a wildcard. It is
	// called again with a new certificate when the folder changes. c has no Leaf.
	Install func(host string, c *tls.Certificate)
	// Remove stops serving host (its folder is gone or no longer carries the name). Default:
	// nothing. Install and Remove are never called concurrently, and never for a host
	// whose certificate did not change.
	Remove func(host string)
	// WildcardHosts returns exact host names under parent that a wildcard "*.parent"
	// certificate should also be installed on: names the SNI store holds exact entries for
	// (an exact entry beats a wildcard at lookup), such as a tenant's SNI hosts. Names carried
	// by a certificate of their own are left to it. Default: none.
	WildcardHosts func(parent string) []string
	// Logger gets one line per change and per problem; default: none.
	Logger *zap.Logger
	// Registerer gets the metrics (edgesim_certdir_*); default: not registered.
	Registerer prometheus.Registerer
	// Now is the clock for validity warnings; default time.Now.
	Now func() time.Time
}

// Source loads certificates from a directory and keeps them current. Build it with New, then
// call Load for one pass or Start to keep polling; Stop ends polling and leaves the installed
// certificates in place (a stopped Source is not started again). All methods are safe for
// concurrent use.
type Source struct {
	cfg Config
	log *zap.Logger
	m   *metrics

	mu        sync.Mutex // serialises passes over the directory
	folders   map[string]*folder
	installed map[string]*tls.Certificate // host -> what Install was last given
	dirErr    string                      // the directory error last reported by a poll
	hinted    bool                        // the tls.crt-in-DIR hint was logged

	runMu  sync.Mutex
	cancel context.CancelFunc // set while polling
	done   chan struct{}
}

// folder is one DIR/<name>.
type folder struct {
	name    string
	seen    digest // content last dealt with: loaded, or reported as failing
	pending digest // failing content seen once by a poll, not yet reported
	good    *cert  // the certificate in use; nil when none has loaded yet
	stat    string // the files' metadata when last read: unchanged means no need to read them
}

// New checks cfg and returns a Source that has not read the directory yet.
func New(cfg Config) (*Source, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: Dir is empty", ErrConfig)
	}
	if cfg.Install == nil {
		return nil, fmt.Errorf("%w: Install is nil", ErrConfig)
	}
	if cfg.Poll < 0 {
		return nil, fmt.Errorf("%w: Poll %v is negative", ErrConfig, cfg.Poll)
	}
	if cfg.Poll == 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Remove == nil {
		cfg.Remove = func(string) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Source{
		cfg: cfg, log: cfg.Logger.Named("certdir"), m: m,
		folders: map[string]*folder{}, installed: map[string]*tls.Certificate{},
	}, nil
}

// Load reads the whole directory once and installs what changed; every failing pair is
// reported at once. It returns an error (wrapping ErrDir, naming the path) only when the
// directory itself cannot be read; what was installed then stays.
func (s *Source) Load() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.scan(false)
}

// Start loads the directory (as Load, returning its error) and then polls it every
// Config.Poll until ctx ends or Stop is called.
func (s *Source) Start(ctx context.Context) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.cancel != nil {
		return ErrStarted
	}
	if err := s.Load(); err != nil {
		return err
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.run(ctx, s.done)
	return nil
}

// Stop ends polling and waits for a pass in progress. The installed certificates stay.
// Stop on a Source not started does nothing.
func (s *Source) Stop() {
	s.runMu.Lock()
	cancel, done := s.cancel, s.done
	s.runMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (s *Source) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.poll()
		}
	}
}

// poll is one polling pass: a failing pair is reported only when a second poll finds it the
// same, and a directory that cannot be read is logged (once) rather than returned.
func (s *Source) poll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.scan(true); err != nil {
		if msg := err.Error(); msg != s.dirErr {
			s.dirErr = msg
			s.m.errors.WithLabelValues(ReasonDir).Inc()
			s.log.Warn("certificate directory unreadable: keeping the certificates loaded", zap.Error(err))
		}
		return
	}
	if s.dirErr != "" {
		s.dirErr = ""
		s.log.Info("certificate directory readable again", zap.String("dir", s.cfg.Dir))
	}
}

// scan reads the directory, reloads changed folders and installs the result; the caller holds
// s.mu. confirm delays reporting a failing pair to the next pass (see poll).
func (s *Source) scan(confirm bool) error {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return dirError(s.cfg.Dir, err)
	}
	changed := false
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // ..data, ..<timestamp> and other hidden entries are not certificate folders
		}
		path := filepath.Join(s.cfg.Dir, name)
		isDir := e.IsDir()
		if e.Type()&fs.ModeSymlink != 0 {
			// A projected volume mounted at DIR links each folder through DIR/..data.
			fi, err := os.Stat(path)
			isDir = err != nil || fi.IsDir() // a dangling link: a folder we cannot read now
		}
		if !isDir {
			if name == CertFile {
				s.hintOnce()
			}
			continue
		}
		present[name] = true
		f := s.folders[name]
		if f == nil {
			f = &folder{name: name}
			s.folders[name] = f
		}
		if s.check(f, path, confirm) {
			changed = true
		}
	}
	for name, f := range s.folders {
		if present[name] {
			continue
		}
		delete(s.folders, name)
		if f.good != nil {
			changed = true
			s.log.Info("certificate folder removed: its names are no longer served", zap.String("folder", name),
				zap.Strings("names", f.good.names))
		}
	}
	if changed {
		s.apply()
	}
	return nil
}

// hintOnce logs, once, that a Secret mounted straight at DIR is not read; the caller holds s.mu.
func (s *Source) hintOnce() {
	if s.hinted {
		return
	}
	s.hinted = true
	s.log.Warn("tls.crt directly in the certificate directory is not read: mount each Secret in a folder of its own (DIR/<name>/tls.crt)",
		zap.String("dir", s.cfg.Dir))
}

// check reloads f when its content changed and reports whether its certificate in use changed.
func (s *Source) check(f *folder, path string, confirm bool) bool {
	// Reading and hashing every pair on every poll costs a core at 10,000 folders polled every
	// 50 ms; the files' metadata (through the kubelet's links) tells whether anything moved.
	st := statPair(path)
	if st != "" && st == f.stat && f.pending == (digest{}) {
		return false
	}
	f.stat = st // taken before reading: a change while we read shows at the next poll
	p := readPair(path)
	if p.digest == f.seen {
		return false
	}
	c, reason, err := parsePair(p)
	if err != nil {
		if confirm && p.digest != f.pending {
			// Perhaps caught between writes (tls.crt new, tls.key old): look again next poll.
			f.pending = p.digest
			s.log.Debug("certificate pair not usable yet: retrying at the next poll", zap.String("folder", f.name),
				zap.String("reason", reason))
			return false
		}
		f.seen, f.pending = p.digest, digest{}
		s.m.errors.WithLabelValues(reason).Inc()
		fields := []zap.Field{zap.String("folder", f.name), zap.String("reason", reason), zap.Error(err)}
		if f.good != nil {
			s.log.Warn("certificate pair not loaded: keeping the last good certificate", append(fields,
				zap.String("serving_serial", f.good.serial()))...)
		} else {
			s.log.Warn("certificate pair not loaded: nothing served from this folder", fields...)
		}
		return false
	}
	f.seen, f.pending = p.digest, digest{}
	if f.good != nil && f.good.digest == p.digest {
		return false // back to the content in use after a failure
	}
	first := f.good == nil
	f.good = c
	s.m.loads.Inc()
	now := s.cfg.Now()
	fields := []zap.Field{zap.String("folder", f.name), zap.Strings("names", c.names), zap.String("serial", c.serial()),
		zap.Time("not_after", c.leaf.NotAfter)}
	if len(c.skipped) > 0 {
		fields = append(fields, zap.Strings("skipped_names", c.skipped))
	}
	switch {
	case now.After(c.leaf.NotAfter):
		s.m.errors.WithLabelValues(ReasonExpired).Inc()
		s.log.Warn("certificate loaded but expired: clients will refuse it", fields...)
	case now.Before(c.leaf.NotBefore):
		s.m.errors.WithLabelValues(ReasonNotYetValid).Inc()
		s.log.Warn("certificate loaded but not valid yet: clients will refuse it", append(fields,
			zap.Time("not_before", c.leaf.NotBefore))...)
	case first:
		s.log.Info("certificate loaded", fields...)
	default:
		s.log.Info("certificate reloaded", fields...)
	}
	return true
}

// apply works out which certificate each name gets and calls Install and Remove for the
// differences; the caller holds s.mu.
func (s *Source) apply() {
	inUse := make([]*folder, 0, len(s.folders))
	for _, f := range s.folders {
		if f.good != nil {
			inUse = append(inUse, f)
		}
	}
	// The certificate that expires last wins a name; ties go to the folder that sorts first.
	sort.Slice(inUse, func(i, j int) bool {
		a, b := inUse[i].good.leaf.NotAfter, inUse[j].good.leaf.NotAfter
		if !a.Equal(b) {
			return a.After(b)
		}
		return inUse[i].name < inUse[j].name
	})
	want := map[string]*cert{}
	owner := map[string]string{}
	var wildcards []string
	for _, f := range inUse {
		for _, n := range f.good.names {
			if o, taken := owner[n]; taken {
				s.log.Info("name carried by several folders: serving the certificate that expires last",
					zap.String("name", n), zap.String("serving", o), zap.String("not_serving", f.name))
				continue
			}
			want[n], owner[n] = f.good, f.name
			if strings.HasPrefix(n, "*.") {
				wildcards = append(wildcards, n)
			}
		}
	}
	if s.cfg.WildcardHosts != nil {
		sort.Strings(wildcards)
		spread := map[string]*cert{}
		for _, w := range wildcards {
			parent := w[2:]
			for _, h := range s.cfg.WildcardHosts(parent) {
				h = normalize(h)
				label, ok := strings.CutSuffix(h, "."+parent)
				if !ok || label == "" || strings.ContainsAny(label, ".*") {
					continue // not a name the wildcard covers
				}
				if _, taken := want[h]; !taken && spread[h] == nil {
					spread[h] = want[w]
				}
			}
		}
		for h, c := range spread {
			want[h] = c
		}
	}

	hosts := make([]string, 0, len(want))
	for h := range want {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	for _, h := range hosts {
		if c := want[h].tls; s.installed[h] != c {
			s.installed[h] = c
			s.cfg.Install(h, c)
		}
	}
	var gone []string
	for h := range s.installed {
		if want[h] == nil {
			gone = append(gone, h)
		}
	}
	slices.Sort(gone)
	for _, h := range gone {
		delete(s.installed, h)
		s.cfg.Remove(h)
	}
	s.m.certificates.Set(float64(len(inUse)))
	s.m.hosts.Set(float64(len(s.installed)))
}

// Hosts returns the names installed, each with the folder whose certificate serves it.
func (s *Source) Hosts() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	byCert := map[*tls.Certificate]string{}
	for _, f := range s.folders {
		if f.good != nil {
			byCert[f.good.tls] = f.name
		}
	}
	out := make(map[string]string, len(s.installed))
	for h, c := range s.installed {
		out[h] = byCert[c]
	}
	return out
}

// dirError turns a failure to read the directory into a sentence with the path and what to do.
func dirError(dir string, err error) error {
	cause := err
	var pe *fs.PathError
	if errors.As(err, &pe) {
		cause = pe.Err
	}
	return fmt.Errorf("%w %s: %v; create it, or mount the TLS Secrets there as <name>/%s and <name>/%s",
		ErrDir, dir, cause, CertFile, KeyFile)
}
