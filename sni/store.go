// Package sni holds edgesim's certificate store keyed by SNI host name: the table an
// Expressway-E consults to pick a tenant's domain certificate during the TLS handshake.
//
// A Store is built with New and plugs straight into tls.Config.GetCertificate. Lookups normalise
// the name (ASCII case, one trailing dot), then try the exact name, then a wildcard covering the
// left-most label only, then the platform certificate. Reads take no lock and allocate nothing;
// writers change one slot at a time under a per-slot sequence number that readers check (see
// table), so adding, replacing and removing certificates never blocks or fails a handshake, and
// the cost of a lookup does not grow with the number of names beyond what memory caches give. All methods are safe for concurrent use; a Store needs no stopping.
package sni

import (
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Kind says how a lookup was answered.
type Kind uint8

// The ways a name can be answered, in lookup order.
const (
	None     Kind = iota // nothing matched and there is no platform certificate
	Exact                // the name itself
	Wildcard             // *.<parent> for the left-most label
	Platform             // the platform certificate, the fallback
	numKinds
)

var kindNames = [numKinds]string{"none", "exact", "wildcard", "platform"}

func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Errors returned by the store.
var (
	// ErrNoCertificate is returned by GetCertificate when nothing matches and no platform
	// certificate is set; the handshake then fails with an alert.
	ErrNoCertificate = errors.New("sni: no certificate for this server name and no platform certificate")
	// ErrBadName is returned for a name that cannot be a host name key.
	ErrBadName = errors.New("sni: bad host name")
)

// MaxNameLen is the longest host name the store accepts (RFC 1035: 253 octets in text form).
const MaxNameLen = 253

// Store is the concurrent SNI certificate store. Build it with New.
type Store struct {
	seed     maphash.Seed
	exact    atomic.Pointer[table]
	wild     atomic.Pointer[table] // keyed by the parent name: "example.com" for *.example.com
	platform atomic.Pointer[tls.Certificate]
	mu       sync.Mutex // serialises writers; readers never take it
	count    atomic.Int64
	selected [numKinds]atomic.Uint64
}

// New returns an empty store with no platform certificate.
func New() *Store {
	s := &Store{seed: maphash.MakeSeed()}
	s.exact.Store(newTable(0))
	s.wild.Store(newTable(0))
	return s
}

// Lookup returns the certificate for a server name and how it was found. It takes no lock and
// does not allocate.
func (s *Store) Lookup(name string) (*tls.Certificate, Kind) {
	if isNormal(name) {
		return s.lookup(name)
	}
	var buf [MaxNameLen + 1]byte
	key, ok := normalize(name, &buf)
	if !ok {
		key = ""
	}
	return s.lookup(key)
}

// lookup answers for a normalised name.
func (s *Store) lookup(key string) (*tls.Certificate, Kind) {
	if key != "" {
		if c := s.exact.Load().get(hashKey(s.seed, key), key); c != nil {
			return c, Exact
		}
		if i := strings.IndexByte(key, '.'); i > 0 && i < len(key)-1 {
			parent := key[i+1:]
			if c := s.wild.Load().get(hashKey(s.seed, parent), parent); c != nil {
				return c, Wildcard
			}
		}
	}
	if c := s.platform.Load(); c != nil {
		return c, Platform
	}
	return nil, None
}

// isNormal reports whether name needs no folding: short enough, no upper case, no trailing dot.
func isNormal(name string) bool {
	if len(name) > MaxNameLen || len(name) > 0 && name[len(name)-1] == '.' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			return false
		}
	}
	return true
}

// GetCertificate is a tls.Config.GetCertificate: it answers by Lookup and counts the selection.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, k := s.Lookup(hello.ServerName)
	s.selected[k].Add(1)
	if c == nil {
		return nil, ErrNoCertificate
	}
	return c, nil
}

// Selections returns how many GetCertificate calls were answered by each kind.
func (s *Store) Selections() map[Kind]uint64 {
	out := make(map[Kind]uint64, numKinds)
	for k := range numKinds {
		out[k] = s.selected[k].Load()
	}
	return out
}

// SetPlatform sets (or, with nil, clears) the platform certificate served when no name matches.
func (s *Store) SetPlatform(c *tls.Certificate) { s.platform.Store(c) }

// Platform returns the platform certificate, or nil.
func (s *Store) Platform() *tls.Certificate { return s.platform.Load() }

// Len returns the number of names held, wildcards included.
func (s *Store) Len() int { return int(s.count.Load()) }

// Set adds or replaces the certificate for a name; "*.example.com" sets a wildcard. The next
// handshake sees it.
func (s *Store) Set(name string, c *tls.Certificate) error {
	if c == nil {
		return fmt.Errorf("sni: set %q: nil certificate (use Delete to remove a name)", name)
	}
	b := s.Batch()
	if err := b.Set(name, c); err != nil {
		return err
	}
	b.Commit()
	return nil
}

// Delete removes a name (or a "*.parent" wildcard) and reports whether it was there.
func (s *Store) Delete(name string) bool {
	b := s.Batch()
	if b.Delete(name) != nil {
		return false
	}
	return b.Commit().Deleted > 0
}

// CompareAndSet stores c under name (nil: deletes the name) only if the name holds old at that
// moment (nil: nothing), and reports whether it did. A writer that read a name with Get and
// decided on a change this way never overwrites a change another writer made in between.
func (s *Store) CompareAndSet(name string, old, c *tls.Certificate) (bool, error) {
	set, key, err := s.keyOf(name)
	if err != nil {
		return false, err
	}
	b := s.Batch()
	b.ops = append(b.ops, op{set, key, c})
	h := hashKey(s.seed, key)
	_, done := b.commit(func() bool { return set.Load().get(h, key) == old })
	return done, nil
}

// Get returns the certificate stored under exactly this name (or "*.parent"), without wildcard
// matching or platform fallback.
func (s *Store) Get(name string) (*tls.Certificate, bool) {
	set, key, err := s.keyOf(name)
	if err != nil {
		return nil, false
	}
	c := set.Load().get(hashKey(s.seed, key), key)
	return c, c != nil
}

// Range calls fn for every stored name ("*.parent" for wildcards) until fn returns false. It
// sees each name as it was at some moment during the call, not a snapshot of the whole store.
func (s *Store) Range(fn func(name string, c *tls.Certificate) bool) {
	if s.exact.Load().each(fn) {
		s.wild.Load().each(func(key string, c *tls.Certificate) bool { return fn("*."+key, c) })
	}
}

// keyOf validates and normalises a stored name and picks the table it lives in.
func (s *Store) keyOf(name string) (*atomic.Pointer[table], string, error) {
	set := &s.exact
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		set, name = &s.wild, rest
	}
	var buf [MaxNameLen + 1]byte
	key, ok := normalize(name, &buf)
	if !ok || key == "" || strings.Contains(key, "*") {
		return nil, "", fmt.Errorf("%w: %q (want a host name of at most %d octets, or *.parent for a wildcard)", ErrBadName, name, MaxNameLen)
	}
	return set, strings.Clone(key), nil
}

// normalize lower-cases ASCII letters and drops one trailing dot. When name is already normal
// it is returned as is; otherwise the result is built in buf and aliases it, so it is valid only
// while buf is unchanged (callers copy it before storing it). It
// reports false for names longer than MaxNameLen.
func normalize(name string, buf *[MaxNameLen + 1]byte) (string, bool) {
	n := len(name)
	if n > 0 && name[n-1] == '.' {
		n--
	}
	if n > MaxNameLen {
		return "", false
	}
	i := 0
	for i < n && !('A' <= name[i] && name[i] <= 'Z') {
		i++
	}
	if i == n {
		return name[:n], true
	}
	copy(buf[:], name[:i])
	for ; i < n; i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return unsafe.String(&buf[0], n), true
}
