package keyedmutex

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestExclusionPerKey(t *testing.T) {
	tests := []struct {
		name    string
		keys    []string // one goroutine per entry
		wantMax int      // most holders of one key at a time
	}{
		{name: "one key many callers", keys: []string{"a", "a", "a", "a", "a", "a"}, wantMax: 1},
		{name: "two keys", keys: []string{"a", "b", "a", "b", "a", "b"}, wantMax: 1},
		{name: "distinct keys", keys: []string{"a", "b", "c", "d"}, wantMax: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Mutex
			var mu sync.Mutex
			in := map[string]int{}
			most := 0
			var wg sync.WaitGroup
			for i, k := range tt.keys {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 50 {
						var unlock func()
						if i%2 == 0 {
							unlock = m.Lock(k)
						} else {
							var err error
							if unlock, err = m.LockContext(context.Background(), k); err != nil {
								t.Errorf("LockContext(%q): %v", k, err)
								return
							}
						}
						mu.Lock()
						in[k]++
						most = max(most, in[k])
						mu.Unlock()
						time.Sleep(time.Microsecond)
						mu.Lock()
						in[k]--
						mu.Unlock()
						unlock()
					}
				}()
			}
			wg.Wait()
			if most != tt.wantMax {
				t.Errorf("most holders of one key at once = %d, want %d", most, tt.wantMax)
			}
			if n := m.Len(); n != 0 {
				t.Errorf("Len after all unlocked = %d, want 0 (entries leak)", n)
			}
		})
	}
}

func TestDifferentKeysDoNotBlock(t *testing.T) {
	var m Mutex
	unlockA := m.Lock("a")
	defer unlockA()
	done := make(chan struct{})
	go func() {
		m.Lock("b")()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal(`Lock("b") blocked while only "a" was held`)
	}
}

func TestLockContext(t *testing.T) {
	tests := []struct {
		name    string
		held    bool // another caller holds the key
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{name: "free key", ctx: func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
		{name: "held key, deadline passes", held: true, wantErr: context.DeadlineExceeded,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 20*time.Millisecond)
			}},
		{name: "held key, cancelled", held: true, wantErr: context.Canceled,
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, cancel
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Mutex
			var unlockHeld func()
			if tt.held {
				unlockHeld = m.Lock("k")
			}
			ctx, cancel := tt.ctx()
			defer cancel()
			unlock, err := m.LockContext(ctx, "k")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("LockContext err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if unlock != nil {
					t.Error("LockContext returned an unlock with an error")
				}
				if got := m.Len(); got != 1 {
					t.Errorf("Len after a given-up wait = %d, want 1 (the holder only)", got)
				}
				unlockHeld()
				// The given-up waiter left nothing held: the key is free.
				m.Lock("k")()
			} else {
				unlock()
			}
			if got := m.Len(); got != 0 {
				t.Errorf("Len at the end = %d, want 0", got)
			}
		})
	}
}

func TestWaiterGetsLockAfterUnlock(t *testing.T) {
	var m Mutex
	unlock := m.Lock("k")
	var got atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		u, err := m.LockContext(context.Background(), "k")
		if err != nil {
			t.Errorf("LockContext: %v", err)
			return
		}
		got.Store(true)
		u()
	}()
	time.Sleep(20 * time.Millisecond)
	if got.Load() {
		t.Fatal("waiter got the lock while it was held")
	}
	unlock()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("waiter never got the lock after unlock")
	}
	if !got.Load() {
		t.Fatal("waiter did not get the lock")
	}
}
