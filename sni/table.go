package sni

import (
	"crypto/tls"
	"hash/maphash"
	"sync/atomic"
	"unsafe"
)

// table is an open-addressing hash table (linear probing) whose slots are atomic pointers to
// immutable entries. Readers probe it without a lock; one writer at a time (the Store's mutex)
// publishes new entries, replaces them, or marks them deleted with the tombstone, and grows the
// table by building a new one and swapping the Store's pointer. A reader that still holds an old
// table sees a consistent, slightly older view.
//
// Compared with a Go map, a hit costs one load of the slot and one of the entry, whose key bytes
// sit inside the entry for names of up to inlineKey octets: at a million names that is two cache
// misses where a map takes three.
type table struct {
	mask  uint64
	slots []atomic.Pointer[entry]
	live  int // entries that are not tombstones; writer-owned
	used  int // live entries plus tombstones; writer-owned
}

const inlineKey = 32 // entry is then 64 bytes: one cache line

type entry struct {
	hash   uint64
	cert   *tls.Certificate
	key    string // points into inline when it fits
	inline [inlineKey]byte
}

// tombstone marks a deleted slot: probes go past it, inserts may reuse it.
var tombstone = &entry{}

func newEntry(h uint64, key string, c *tls.Certificate) *entry {
	e := &entry{hash: h, cert: c}
	if len(key) <= inlineKey && len(key) > 0 {
		n := copy(e.inline[:], key)
		e.key = unsafe.String(&e.inline[0], n)
	} else {
		e.key = key
	}
	return e
}

func newTable(capacity int) *table {
	n := 16
	for n < capacity*2 { // at most half full after a rebuild
		n <<= 1
	}
	return &table{mask: uint64(n - 1), slots: make([]atomic.Pointer[entry], n)}
}

func (t *table) get(h uint64, key string) *entry {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		e := t.slots[i].Load()
		if e == nil {
			return nil
		}
		if e.hash == h && e.key == key && e != tombstone {
			return e
		}
	}
}

// put inserts or replaces; it reports whether the key was new. The caller holds the writer lock
// and has made room (see needsGrow).
func (t *table) put(e *entry) (added bool) {
	free := -1
	for i := e.hash & t.mask; ; i = (i + 1) & t.mask {
		cur := t.slots[i].Load()
		switch {
		case cur == nil:
			if free < 0 {
				free = int(i)
				t.used++
			}
			t.slots[free].Store(e)
			t.live++
			return true
		case cur == tombstone:
			if free < 0 {
				free = int(i)
			}
		case cur.hash == e.hash && cur.key == e.key:
			t.slots[i].Store(e)
			return false
		}
	}
}

// del marks key deleted and reports whether it was present. The caller holds the writer lock.
func (t *table) del(h uint64, key string) bool {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		cur := t.slots[i].Load()
		if cur == nil {
			return false
		}
		if cur != tombstone && cur.hash == h && cur.key == key {
			t.slots[i].Store(tombstone)
			t.live--
			return true
		}
	}
}

// needsGrow reports whether adding n more keys could fill more than three quarters of the slots.
func (t *table) needsGrow(n int) bool { return (t.used+n)*4 > len(t.slots)*3 }

// rebuilt returns a new table holding t's live entries with room for extra more.
func (t *table) rebuilt(extra int) *table {
	nt := newTable(t.live + extra)
	for i := range t.slots {
		if e := t.slots[i].Load(); e != nil && e != tombstone {
			nt.put(e)
		}
	}
	return nt
}

func (t *table) each(fn func(*entry) bool) bool {
	for i := range t.slots {
		if e := t.slots[i].Load(); e != nil && e != tombstone && !fn(e) {
			return false
		}
	}
	return true
}

func hashKey(seed maphash.Seed, key string) uint64 { return maphash.String(seed, key) }
