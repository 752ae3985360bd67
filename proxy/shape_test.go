package proxy

import (
	"encoding/binary"
	"testing"
)

func rowDescription(fields ...struct {
	name          string
	table, typ    uint32
	typmod        int32
	format, attno uint16
}) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(fields)))
	for _, f := range fields {
		b = append(append(b, f.name...), 0)
		b = binary.BigEndian.AppendUint32(b, f.table)
		b = binary.BigEndian.AppendUint16(b, f.attno)
		b = binary.BigEndian.AppendUint32(b, f.typ)
		b = binary.BigEndian.AppendUint16(b, 4)
		b = binary.BigEndian.AppendUint32(b, uint32(f.typmod))
		b = binary.BigEndian.AppendUint16(b, f.format)
	}
	return b
}

// TestRowShape: the shape is what PostgreSQL's "cached plan must not
// change result type" compares (names, types, modifiers), not the table a
// column came from nor the format asked for.
func TestRowShape(t *testing.T) {
	type f = struct {
		name          string
		table, typ    uint32
		typmod        int32
		format, attno uint16
	}
	base := rowShape(rowDescription(f{"x", 100, 23, -1, 0, 1}, f{"y", 100, 25, -1, 0, 2}))
	if base <= shapeNoData {
		t.Fatalf("shape %d collides with the reserved values", base)
	}
	if got := rowShape(rowDescription(f{"x", 200, 23, -1, 1, 1}, f{"y", 200, 25, -1, 1, 2})); got != base {
		t.Errorf("another table and format changed the shape")
	}
	for name, other := range map[string][]byte{
		"type":     rowDescription(f{"x", 100, 20, -1, 0, 1}, f{"y", 100, 25, -1, 0, 2}),
		"typmod":   rowDescription(f{"x", 100, 23, 8, 0, 1}, f{"y", 100, 25, -1, 0, 2}),
		"name":     rowDescription(f{"a", 100, 23, -1, 0, 1}, f{"y", 100, 25, -1, 0, 2}),
		"count":    rowDescription(f{"x", 100, 23, -1, 0, 1}),
		"no field": rowDescription(),
	} {
		if rowShape(other) == base {
			t.Errorf("a different %s gave the same shape", name)
		}
	}
	if rowShape([]byte{0, 1, 'x'}) != 0 {
		t.Error("a malformed RowDescription got a shape")
	}
	body := rowDescription(f{"x", 100, 23, -1, 0, 1})
	if n := testing.AllocsPerRun(100, func() { rowShape(body) }); n != 0 {
		t.Errorf("rowShape allocates %v times; it runs on the reply path", n)
	}
}
