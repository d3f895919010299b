package sni

import (
	"crypto/tls"
	"sync/atomic"
)

// Batch collects changes and applies them under one hold of the writer lock, growing each table
// at most once: the way to load or replace many names (a million at start-up, ten thousand in a
// rotation). Readers see every change as soon as it is applied, each name either before or after
// its change. A Batch is not safe for concurrent use; the Store it came from is.
type Batch struct {
	s   *Store
	ops []op
}

type op struct {
	set  *atomic.Pointer[table]
	key  string
	cert *tls.Certificate // nil deletes
}

// BatchResult counts what a Commit changed.
type BatchResult struct {
	Added, Replaced, Deleted int
}

// Batch starts an empty batch of changes to s.
func (s *Store) Batch() *Batch { return &Batch{s: s} }

// Set queues adding or replacing name ("*.parent" for a wildcard).
func (b *Batch) Set(name string, c *tls.Certificate) error {
	if c == nil {
		return b.Delete(name)
	}
	return b.queue(name, c)
}

// Delete queues removing name ("*.parent" for a wildcard).
func (b *Batch) Delete(name string) error { return b.queue(name, nil) }

// Len is the number of queued changes.
func (b *Batch) Len() int { return len(b.ops) }

func (b *Batch) queue(name string, c *tls.Certificate) error {
	set, key, err := b.s.keyOf(name)
	if err != nil {
		return err
	}
	b.ops = append(b.ops, op{set, key, c})
	return nil
}

// Commit applies the queued changes in order (a later change to a name wins) and empties the
// batch.
func (b *Batch) Commit() BatchResult {
	r, _ := b.commit(nil)
	return r
}

// commit applies the queued changes if cond, asked under the writer lock, allows (nil: always),
// and empties the batch either way.
func (b *Batch) commit(cond func() bool) (BatchResult, bool) {
	s := b.s
	var r BatchResult
	s.mu.Lock()
	if cond != nil && !cond() {
		s.mu.Unlock()
		b.ops = b.ops[:0]
		return r, false
	}
	for _, set := range [...]*atomic.Pointer[table]{&s.exact, &s.wild} {
		adds := 0
		for _, o := range b.ops {
			if o.set == set && o.cert != nil {
				adds++
			}
		}
		if t := set.Load(); t.needsGrow(adds) {
			set.Store(t.rebuilt(s.seed, adds))
		}
	}
	for _, o := range b.ops {
		t := o.set.Load()
		h := hashKey(s.seed, o.key)
		switch {
		case o.cert == nil:
			if t.del(h, o.key) {
				r.Deleted++
			}
		case t.put(h, o.key, o.cert):
			r.Added++
		default:
			r.Replaced++
		}
	}
	s.mu.Unlock()
	s.count.Add(int64(r.Added - r.Deleted))
	b.ops = b.ops[:0]
	return r, true
}
