// Package keyedmutex serialises work per key (a claim UID, a pod UID):
// holders of different keys run in parallel, holders of one key one
// after the other. A key's entry lives only while someone holds or
// waits for it, so the map does not grow with every key ever seen.
package keyedmutex

import (
	"context"
	"sync"
)

// Mutex is a set of mutexes, one per key. The zero value is ready to use;
// a Mutex must not be copied after first use.
type Mutex struct {
	mu   sync.Mutex
	keys map[string]*entry
}

// entry is one key's lock: a one-slot channel, so a waiter with a context
// can stop waiting. refs counts holders and waiters.
type entry struct {
	ch   chan struct{}
	refs int
}

// Lock waits for the key's lock and returns its unlock function, which
// must be called exactly once.
func (m *Mutex) Lock(key string) func() {
	e := m.acquire(key)
	e.ch <- struct{}{}
	return func() { m.unlock(key, e) }
}

// LockContext is Lock for a caller with a deadline: when ctx ends before
// the lock is free it returns ctx's error and holds nothing.
func (m *Mutex) LockContext(ctx context.Context, key string) (func(), error) {
	e := m.acquire(key)
	select {
	case e.ch <- struct{}{}:
	case <-ctx.Done():
		m.release(key, e)
		return nil, ctx.Err()
	}
	return func() { m.unlock(key, e) }, nil
}

// Len is the number of keys held or waited for now.
func (m *Mutex) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys)
}

// acquire returns the key's entry with the caller counted in.
func (m *Mutex) acquire(key string) *entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys == nil {
		m.keys = map[string]*entry{}
	}
	e := m.keys[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		m.keys[key] = e
	}
	e.refs++
	return e
}

// unlock frees the key's lock held by the caller and counts it out.
func (m *Mutex) unlock(key string, e *entry) {
	<-e.ch
	m.release(key, e)
}

// release counts the caller out of the key's entry, dropping the entry
// when nobody else holds or waits for it.
func (m *Mutex) release(key string, e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(m.keys, key)
	}
}
