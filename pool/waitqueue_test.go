package pool

import "testing"

// TestWaitQueueFIFO: oldest first across growth and wrap-around, Remove
// from anywhere keeps the order of the rest, Drain empties it in order.
func TestWaitQueueFIFO(t *testing.T) {
	var q waitQueue
	ws := make([]*waiter, 40)
	for i := range ws {
		ws[i] = &waiter{}
	}
	next := 0 // oldest not yet popped
	// Interleave pushes and pops so that head wraps while the ring grows.
	for i, w := range ws[:30] {
		q.Push(w)
		if i%3 == 2 {
			if got := q.Pop(); got != ws[next] {
				t.Fatalf("pop %d: got waiter %p, want %p", next, got, ws[next])
			}
			next++
		}
	}
	if q.Len() != 20 || q.Front() != ws[next] {
		t.Fatalf("after 30 pushes and 10 pops: len %d, front %p; want 20, %p", q.Len(), q.Front(), ws[next])
	}
	// Remove one in the middle, the oldest and the newest.
	for _, w := range []*waiter{ws[next+5], ws[next], ws[29]} {
		if !q.Remove(w) {
			t.Fatalf("Remove(%p) found nothing", w)
		}
	}
	if q.Remove(ws[next]) || q.Remove(&waiter{}) {
		t.Fatal("Remove of a waiter not queued reported true")
	}
	for _, w := range ws[30:] {
		q.Push(w)
	}
	var want []*waiter
	for i := next + 1; i < 29; i++ {
		if i != next+5 {
			want = append(want, ws[i])
		}
	}
	want = append(want, ws[30:]...)
	var got []*waiter
	q.Drain(func(w *waiter) { got = append(got, w) })
	if len(got) != len(want) || q.Len() != 0 {
		t.Fatalf("drained %d (left %d), want %d", len(got), q.Len(), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("drain order differs at %d", i)
		}
	}
}

// TestWaitQueueShrinks: a burst's ring is given back once the queue empties.
func TestWaitQueueShrinks(t *testing.T) {
	var q waitQueue
	for range shrinkAbove * 2 {
		q.Push(&waiter{})
	}
	q.Drain(func(*waiter) {})
	if q.buf != nil {
		t.Fatalf("an emptied queue keeps a ring of %d", len(q.buf))
	}
	q.Push(&waiter{}) // and works again
	if q.Len() != 1 {
		t.Fatal("push after shrink lost the waiter")
	}
}

// BenchmarkWaitQueueServeOldest: a release handing its backend to the
// oldest of 1,000 waiters, who then queues again; constant time, no
// allocation.
func BenchmarkWaitQueueServeOldest(b *testing.B) {
	var q waitQueue
	for range 1000 {
		q.Push(&waiter{})
	}
	b.ReportAllocs()
	for b.Loop() {
		q.Push(q.Pop())
	}
}
