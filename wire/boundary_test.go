package wire

import "testing"

func TestBoundary(t *testing.T) {
	// Three messages: CopyData "abc", CopyData "", ReadyForQuery 'I'.
	stream := []byte{'d', 0, 0, 0, 7, 'a', 'b', 'c', 'd', 0, 0, 0, 4, 'Z', 0, 0, 0, 5, 'I'}
	ends := map[int]bool{0: true, 8: true, 13: true, len(stream): true}
	for cut := 0; cut <= len(stream); cut++ {
		// Split the prefix at every point into two chunks: the answer
		// depends only on how much was seen.
		for split := 0; split <= cut; split++ {
			var b Boundary
			b.Advance(stream[:split])
			b.Advance(stream[split:cut])
			if got := b.Between(); got != ends[cut] {
				t.Fatalf("after %d bytes (chunks %d+%d): Between = %v, want %v", cut, split, cut-split, got, ends[cut])
			}
		}
	}
	var b Boundary
	b.Advance([]byte{'d', 0, 0, 0, 2, 'x'})
	if b.Between() {
		t.Error("a length below 4 left the stream looking framed")
	}
}
