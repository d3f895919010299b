package sni

import (
	"crypto/tls"
	"encoding/binary"
	"hash/maphash"
	"runtime"
	"sync/atomic"
)

// table is an open-addressing hash table (linear probing) whose slots hold the key, its hash and
// the certificate inline, one 64-byte cache line per slot. Readers probe without a lock; one
// writer at a time (the Store's mutex) changes slots, and grows the table by building a new one
// and swapping the Store's pointer, so a reader holding an old table sees a consistent, slightly
// older view.
//
// Each slot is a small seqlock: a writer that changes which key a slot holds makes seq odd,
// rewrites the slot and makes it even again; a reader retries when seq was odd or moved while it
// read. Replacing the certificate of a key already in place is a single atomic store. Every field
// is read and written atomically, so the race detector has nothing to say.
//
// A hit at a million names costs one cache line, where a Go map takes three (control word, slot,
// key bytes): the key is compared in place for names of up to inlineKey octets.
type table struct {
	mask  uint64
	slots []slot
	live  int // keys present; writer-owned
	used  int // keys present plus tombstones; writer-owned
}

const inlineKey = 32

type slot struct {
	seq  atomic.Uint64
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
	for i := range p {
		p[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
	return p
}

func (s *slot) matches(key string, p *packed) bool {
	if len(key) > inlineKey {
		l := s.long.Load()
		return l != nil && *l == key
	}
	for i := range p {
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
	n := 16
	for n < capacity*2 { // at most half full after a rebuild
		n <<= 1
	}
	return &table{mask: uint64(n - 1), slots: make([]slot, n)}
}

// get returns the certificate stored for key (whose hash is h), or nil.
func (t *table) get(h uint64, key string) *tls.Certificate {
	want := tagOf(h, key)
	p := pack(key)
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		for {
			v := s.seq.Load()
			if v&1 != 0 {
				runtime.Gosched() // a writer is rewriting this slot: a few stores, let it finish
				continue
			}
			tag := s.tag.Load()
			if tag == 0 {
				if s.seq.Load() == v {
					return nil
				}
				continue
			}
			var c *tls.Certificate
			hit := tag == want && s.matches(key, &p)
			if hit {
				c = s.cert.Load()
			}
			if s.seq.Load() != v {
				continue
			}
			if hit {
				return c
			}
			break
		}
	}
}

// find returns the slot holding key, or the slot where it would be inserted (the first
// tombstone on its probe path, else the empty slot ending it). Writer only.
func (t *table) find(h uint64, key string) (s *slot, present bool) {
	want, p := tagOf(h, key), pack(key)
	var free *slot
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		switch tag := s.tag.Load(); {
		case tag == 0:
			if free == nil {
				free = s
			}
			return free, false
		case tag == tombstone:
			if free == nil {
				free = s
			}
		case tag == want && s.matches(key, &p):
			return s, true
		}
	}
}

// put inserts or replaces and reports whether the key was new. The caller holds the writer lock
// and has made room (see needsGrow).
func (t *table) put(h uint64, key string, c *tls.Certificate) (added bool) {
	s, present := t.find(h, key)
	if present {
		s.cert.Store(c)
		return false
	}
	if s.tag.Load() == 0 {
		t.used++
	}
	t.live++
	s.seq.Add(1)
	if len(key) > inlineKey {
		s.long.Store(&key)
	} else {
		s.long.Store(nil)
		p := pack(key)
		for i := range p {
			s.key[i].Store(p[i])
		}
	}
	s.cert.Store(c)
	s.tag.Store(tagOf(h, key))
	s.seq.Add(1)
	return true
}

// del marks key deleted and reports whether it was present. The caller holds the writer lock.
func (t *table) del(h uint64, key string) bool {
	s, present := t.find(h, key)
	if !present {
		return false
	}
	s.seq.Add(1)
	s.tag.Store(tombstone)
	s.cert.Store(nil)
	s.long.Store(nil)
	s.seq.Add(1)
	t.live--
	return true
}

// needsGrow reports whether adding n more keys could fill more than three quarters of the slots.
func (t *table) needsGrow(n int) bool { return (t.used+n)*4 > len(t.slots)*3 }

// rebuilt returns a new table holding t's keys with room for extra more. Writer only.
func (t *table) rebuilt(seed maphash.Seed, extra int) *table {
	nt := newTable(t.live + extra)
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
		for {
			v := s.seq.Load()
			if v&1 != 0 {
				runtime.Gosched()
				continue
			}
			tag := s.tag.Load()
			if tag == 0 || tag == tombstone {
				if s.seq.Load() == v {
					break
				}
				continue
			}
			key, c := s.keyString(), s.cert.Load()
			if s.seq.Load() != v {
				continue
			}
			if c != nil && !fn(key, c) {
				return false
			}
			break
		}
	}
	return true
}

func hashKey(seed maphash.Seed, key string) uint64 { return maphash.String(seed, key) }
