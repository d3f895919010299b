package sni

import (
	"crypto/tls"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"sync/atomic"
)

// table is an open-addressing hash table (linear probing) whose slots hold the key, its hash and
// the certificate inline, one 64-byte cache line per slot. Readers probe without a lock and never
// wait; one writer at a time (the Store's mutex) changes slots, and grows or compacts the table by
// building a new one and swapping the Store's pointer, so a reader holding an old table sees a
// consistent, slightly older view.
//
// A slot is written once: the writer fills in the key and certificate of an empty slot and
// publishes its tag last, so a reader that sees the tag sees the rest. Replacing a certificate is
// one atomic store; deleting marks the slot with the tombstone tag and clears its certificate.
// Deleted slots are not reused until the next rebuild, so the key bytes of a published slot never
// change under a reader. Every field is read and written atomically.
//
// A hit at a million names costs one cache line where a Go map takes three (control word, slot,
// key bytes): names of up to inlineKey octets are compared in place.
type table struct {
	n     uint64 // len(slots)
	slots []slot
	live  int // keys present; writer-owned
	used  int // slots ever filled since the last rebuild (live and deleted); writer-owned
}

const inlineKey = 40

type slot struct {
	tag  atomic.Uint64 // 0: empty; tombstone: deleted; else hash with the key length in the low byte
	cert atomic.Pointer[tls.Certificate]
	long atomic.Pointer[string] // the key, when longer than inlineKey
	key  [inlineKey / 8]atomic.Uint64
}

const (
	tombstone = ^uint64(0xff) // length byte 0: no real key has it
	longKey   = 0xff          // length byte of keys stored in long
)

// tagOf combines a key's hash and length; never 0 or tombstone for a non-empty key.
func tagOf(h uint64, key string) uint64 {
	n := uint64(len(key))
	if n > inlineKey {
		n = longKey
	}
	return h&^0xff | n
}

// packed is a key as the slot stores it inline: little-endian words, zero padded.
type packed [inlineKey / 8]uint64

func pack(key string) (p packed) {
	if len(key) > inlineKey {
		return p
	}
	var b [inlineKey]byte
	copy(b[:], key)
	for i := 0; i < words(key); i++ {
		p[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	return p
}

// words is how many inline words a key fills; the rest are zero.
func words(key string) int { return (len(key) + 7) / 8 }

func (s *slot) matches(key string, p *packed) bool {
	if len(key) > inlineKey {
		l := s.long.Load()
		return l != nil && *l == key
	}
	// The tag already matched, and it holds the length: only the words the key fills differ.
	for i := 0; i < words(key); i++ {
		if s.key[i].Load() != p[i] {
			return false
		}
	}
	return true
}

func (s *slot) keyString() string {
	if l := s.long.Load(); l != nil {
		return *l
	}
	var b [inlineKey]byte
	for i := range s.key {
		binary.LittleEndian.PutUint64(b[i*8:], s.key[i].Load())
	}
	return string(b[:s.tag.Load()&0xff])
}

func newTable(capacity int) *table {
	n := max(16, capacity+capacity/2) // at most two thirds full after a rebuild
	return &table{n: uint64(n), slots: make([]slot, n)}
}

// home is where key's probe starts: the hash scaled to the table size (any size, not only powers
// of two, so the table need not be up to twice as large as its keys need).
func (t *table) home(h uint64) uint64 {
	hi, _ := bits.Mul64(h, t.n)
	return hi
}

// next is the slot after i, wrapping around.
func (t *table) next(i uint64) uint64 {
	if i++; i == t.n {
		return 0
	}
	return i
}

// get returns the certificate stored for key (whose hash is h), or nil.
func (t *table) get(h uint64, key string) *tls.Certificate {
	want := tagOf(h, key)
	p := pack(key)
	for i := t.home(h); ; i = t.next(i) {
		s := &t.slots[i]
		switch s.tag.Load() {
		case 0:
			return nil
		case want:
			if s.matches(key, &p) {
				return s.cert.Load() // nil if deleted since the tag was read
			}
		}
	}
}

// find returns the live slot holding key, or nil and the empty slot ending its probe path.
// Writer only.
func (t *table) find(h uint64, key string) (live, empty *slot) {
	want, p := tagOf(h, key), pack(key)
	for i := t.home(h); ; i = t.next(i) {
		s := &t.slots[i]
		switch tag := s.tag.Load(); {
		case tag == 0:
			return nil, s
		case tag == want && s.matches(key, &p):
			return s, nil
		}
	}
}

// put inserts or replaces and reports whether the key was new. The caller holds the writer lock
// and has made room (see needsGrow).
func (t *table) put(h uint64, key string, c *tls.Certificate) (added bool) {
	s, empty := t.find(h, key)
	if s != nil {
		s.cert.Store(c)
		return false
	}
	if len(key) > inlineKey {
		empty.long.Store(&key)
	} else {
		p := pack(key)
		for i := range p {
			empty.key[i].Store(p[i])
		}
	}
	empty.cert.Store(c)
	empty.tag.Store(tagOf(h, key)) // publish
	t.used++
	t.live++
	return true
}

// del marks key deleted and reports whether it was present. The caller holds the writer lock.
func (t *table) del(h uint64, key string) bool {
	s, _ := t.find(h, key)
	if s == nil {
		return false
	}
	s.tag.Store(tombstone)
	s.cert.Store(nil)
	t.live--
	return true
}

// needsGrow reports whether adding n more keys could fill more than three quarters of the slots.
func (t *table) needsGrow(n int) bool { return (t.used+n)*4 > len(t.slots)*3 }

// rebuilt returns a new table holding t's keys with room for extra more. Writer only.
func (t *table) rebuilt(seed maphash.Seed, extra int) *table {
	nt := newTable(t.live + max(extra, t.live/2)) // growing one by one: room for half as many again
	t.each(func(key string, c *tls.Certificate) bool {
		nt.put(hashKey(seed, key), key, c)
		return true
	})
	return nt
}

// each calls fn for every key until fn returns false, and reports whether it ran to the end.
// It reads each slot as of some moment during the call.
func (t *table) each(fn func(key string, c *tls.Certificate) bool) bool {
	for i := range t.slots {
		s := &t.slots[i]
		if tag := s.tag.Load(); tag == 0 || tag == tombstone {
			continue
		}
		if c := s.cert.Load(); c != nil && !fn(s.keyString(), c) {
			return false
		}
	}
	return true
}

func hashKey(seed maphash.Seed, key string) uint64 { return maphash.String(seed, key) }
