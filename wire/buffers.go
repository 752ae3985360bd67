package wire

import "sync"

// BufferPool lends fixed-size buffers to readers and writers that are active,
// so that thousands of idle connections don't each pin one.
type BufferPool struct {
	size int
	pool sync.Pool
}

// NewBufferPool returns a pool of buffers of size bytes.
func NewBufferPool(size int) *BufferPool {
	bp := &BufferPool{size: size}
	bp.pool.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return bp
}

// Size is the length of every buffer the pool lends.
func (bp *BufferPool) Size() int { return bp.size }

// Get borrows a buffer.
func (bp *BufferPool) Get() *[]byte { return bp.pool.Get().(*[]byte) }

// Put returns a buffer obtained from Get.
func (bp *BufferPool) Put(b *[]byte) { bp.pool.Put(b) }
