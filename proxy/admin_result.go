package proxy

import (
	"net"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Result sets of the admin console: text-format columns, typed int8 for
// counts and text otherwise, as PgBouncer's console does.

// Type OIDs of admin console columns.
const (
	oidInt8 = 20
	oidText = 25
)

// adminTimeLayout formats timestamps in admin results, as PgBouncer does.
const adminTimeLayout = "2006-01-02 15:04:05 MST"

type adminColumn struct {
	name string
	oid  uint32
}

func textCol(name string) adminColumn { return adminColumn{name, oidText} }
func intCol(name string) adminColumn  { return adminColumn{name, oidInt8} }

// adminResult is one result set: columns and rows of text values (nil =
// NULL).
type adminResult struct {
	cols []adminColumn
	rows [][][]byte
}

func newAdminResult(cols ...adminColumn) *adminResult { return &adminResult{cols: cols} }

// add appends a row. Values: string, int, int64, uint32, uint64, float64,
// bool (as 0/1), time.Time (NULL when zero), nil (NULL) and []byte.
func (r *adminResult) add(vals ...any) {
	if len(vals) != len(r.cols) {
		panic("admin result: " + strconv.Itoa(len(vals)) + " values for " + strconv.Itoa(len(r.cols)) + " columns")
	}
	row := make([][]byte, len(vals))
	for i, v := range vals {
		row[i] = adminValue(v)
	}
	r.rows = append(r.rows, row)
}

func adminValue(v any) []byte {
	switch v := v.(type) {
	case nil:
		return nil
	case string:
		return []byte(v)
	case []byte:
		return v
	case int:
		return strconv.AppendInt(nil, int64(v), 10)
	case int64:
		return strconv.AppendInt(nil, v, 10)
	case uint32:
		return strconv.AppendUint(nil, uint64(v), 10)
	case uint64:
		return strconv.AppendUint(nil, v, 10)
	case float64:
		return strconv.AppendFloat(nil, v, 'f', -1, 64)
	case bool:
		if v {
			return []byte("1")
		}
		return []byte("0")
	case time.Time:
		if v.IsZero() {
			return nil
		}
		return []byte(v.UTC().Format(adminTimeLayout))
	default:
		panic("admin result: unsupported value type")
	}
}

// write appends RowDescription, the DataRows and CommandComplete to the
// client writer (the caller flushes).
func (r *adminResult) write(s *session, tag string) error {
	fields := make([]pgproto3.FieldDescription, len(r.cols))
	for i, c := range r.cols {
		size := int16(-1)
		if c.oid == oidInt8 {
			size = 8
		}
		fields[i] = pgproto3.FieldDescription{
			Name: []byte(c.name), DataTypeOID: c.oid, DataTypeSize: size, TypeModifier: -1, Format: 0,
		}
	}
	if err := s.cw.Append((&pgproto3.RowDescription{Fields: fields}).Encode); err != nil {
		return err
	}
	for _, row := range r.rows {
		if err := s.cw.Append((&pgproto3.DataRow{Values: row}).Encode); err != nil {
			return err
		}
	}
	return s.writeCommandComplete(tag)
}

func (s *session) writeCommandComplete(tag string) error {
	return s.cw.Append((&pgproto3.CommandComplete{CommandTag: []byte(tag)}).Encode)
}

// hostPort splits a client or local address for SHOW CLIENTS: a Unix
// socket gives ("unix", nil).
func hostPort(a net.Addr) (string, any) {
	if a == nil {
		return "", nil
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String(), ta.Port
	}
	if a.Network() == "unix" {
		return "unix", nil
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), nil
	}
	if n, err := strconv.Atoi(port); err == nil {
		return host, n
	}
	return host, nil
}
