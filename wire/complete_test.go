package wire

import (
	"bytes"
	"testing"
	"testing/iotest"
)

func TestCompleteBuffersWholeMessage(t *testing.T) {
	msg := append([]byte{'Q', 0, 0, 0, 13}, []byte("SELECT 1\x00")...)
	r := NewPooledReader(iotest.OneByteReader(bytes.NewReader(msg)), NewBufferPool(1024))
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if err := r.Complete(); err != nil {
		t.Fatal(err)
	}
	if r.Buffered() != len(msg) {
		t.Fatalf("buffered %d of %d bytes", r.Buffered(), len(msg))
	}
	got, err := r.Message()
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("message %q, %v", got, err)
	}
}
