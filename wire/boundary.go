package wire

import "encoding/binary"

// Boundary follows where messages begin in a stream that is copied in
// arbitrary chunks, without buffering it: a relay that forwards bytes
// unread (a replication stream) learns whether it stopped between two
// messages, where it may add one of its own (a FATAL), or inside one.
type Boundary struct {
	hdr    [HeaderLen]byte
	hdrN   int
	left   int64 // body bytes of the current message not yet seen
	broken bool  // a length below 4: the stream is not framed
}

// Advance accounts for p, the next bytes of the stream.
func (b *Boundary) Advance(p []byte) {
	for len(p) > 0 && !b.broken {
		if b.left > 0 {
			k := int64(len(p))
			if k > b.left {
				k = b.left
			}
			p = p[k:]
			b.left -= k
			continue
		}
		k := copy(b.hdr[b.hdrN:], p)
		b.hdrN += k
		p = p[k:]
		if b.hdrN < HeaderLen {
			return
		}
		b.hdrN = 0
		n := int64(binary.BigEndian.Uint32(b.hdr[1:]))
		if n < 4 {
			b.broken = true
			return
		}
		b.left = n - 4
	}
}

// Between reports whether the bytes seen so far end exactly after a
// whole message.
func (b *Boundary) Between() bool { return !b.broken && b.hdrN == 0 && b.left == 0 }
