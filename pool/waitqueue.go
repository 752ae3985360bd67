package pool

// waitQueue is a pool's FIFO of clients waiting for a backend. It is a
// ring: with a thousand clients queued behind a pool of ten, serving the
// oldest at every release moves nothing, where a slice shifted down would
// copy the whole queue each time.
type waitQueue struct {
	buf  []*waiter // len is 0 or a power of two
	head int       // index of the oldest waiter
	n    int
}

// shrinkAbove: an empty queue whose ring grew past this (a burst of
// waiters) gives the memory back.
const shrinkAbove = 1024

func (q *waitQueue) Len() int { return q.n }

// Front is the oldest waiter; the queue must not be empty.
func (q *waitQueue) Front() *waiter { return q.buf[q.head] }

func (q *waitQueue) Push(w *waiter) {
	if q.n == len(q.buf) {
		q.grow()
	}
	q.buf[(q.head+q.n)&(len(q.buf)-1)] = w
	q.n++
}

// Pop removes and returns the oldest waiter; the queue must not be empty.
func (q *waitQueue) Pop() *waiter {
	w := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) & (len(q.buf) - 1)
	q.n--
	if q.n == 0 {
		q.head = 0
		if len(q.buf) > shrinkAbove {
			q.buf = nil
		}
	}
	return w
}

// Remove takes w out wherever it is (a wait that timed out or was
// cancelled) and reports whether it was there.
func (q *waitQueue) Remove(w *waiter) bool {
	mask := len(q.buf) - 1
	for i := range q.n {
		if q.buf[(q.head+i)&mask] != w {
			continue
		}
		for j := i; j < q.n-1; j++ {
			q.buf[(q.head+j)&mask] = q.buf[(q.head+j+1)&mask]
		}
		q.buf[(q.head+q.n-1)&mask] = nil
		q.n--
		if q.n == 0 {
			q.head = 0
		}
		return true
	}
	return false
}

// Drain removes every waiter, oldest first, handing each to f.
func (q *waitQueue) Drain(f func(*waiter)) {
	for q.n > 0 {
		f(q.Pop())
	}
}

func (q *waitQueue) grow() {
	buf := make([]*waiter, max(8, 2*len(q.buf)))
	for i := range q.n {
		buf[i] = q.buf[(q.head+i)&(len(q.buf)-1)]
	}
	q.buf, q.head = buf, 0
}
