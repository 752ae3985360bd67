package wire

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// body returns the body of the single message enc encodes.
func body(t *testing.T, m interface{ Encode([]byte) ([]byte, error) }) []byte {
	t.Helper()
	return encode(t, m)[HeaderLen:]
}

func TestErrorCode(t *testing.T) {
	tests := []struct {
		name           string
		body           []byte
		code, severity string
	}{
		{"error with V", body(t, &pgproto3.ErrorResponse{
			Severity: "ERREUR", SeverityUnlocalized: "ERROR", Code: "42P01", Message: "relation does not exist",
		}), "42P01", "ERROR"},
		{"error without V", body(t, &pgproto3.ErrorResponse{
			Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command",
		}), "57P01", "FATAL"},
		{"notice", body(t, &pgproto3.NoticeResponse{
			Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: "hi", Detail: "d", Hint: "h",
		}), "00000", "NOTICE"},
		{"many fields", body(t, &pgproto3.ErrorResponse{
			Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "23505", Message: "duplicate key",
			Detail: "Key (id)=(1) already exists.", SchemaName: "public", TableName: "t",
			ConstraintName: "t_pkey", File: "nbtinsert.c", Line: 666, Routine: "_bt_check_unique",
		}), "23505", "ERROR"},
		{"V before S", []byte("VERROR\x00SERREUR\x00C40001\x00\x00"), "40001", "ERROR"},
		{"no code", []byte("SERROR\x00Mboom\x00\x00"), "", "ERROR"},
		{"empty", []byte{0}, "", ""},
		{"nil", nil, "", ""},
		{"truncated after code", []byte("SERROR\x00C42601\x00Msyntax"), "42601", "ERROR"},
		{"truncated code", []byte("SERROR\x00C426"), "", "ERROR"},
		{"missing final NUL", []byte("C08006\x00"), "08006", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, sev := ErrorCode(tt.body)
			if string(code) != tt.code || string(sev) != tt.severity {
				t.Fatalf("got %q %q, want %q %q", code, sev, tt.code, tt.severity)
			}
		})
	}
	// Zero allocations: it runs on every server error.
	b := tests[3].body
	if n := testing.AllocsPerRun(100, func() { ErrorCode(b) }); n != 0 {
		t.Fatalf("ErrorCode allocates %v", n)
	}
}

func TestParameterStatus(t *testing.T) {
	tests := []struct {
		name       string
		body       []byte
		key, value string
		ok         bool
	}{
		{"pgproto3", body(t, &pgproto3.ParameterStatus{Name: "TimeZone", Value: "Europe/Paris"}), "TimeZone", "Europe/Paris", true},
		{"empty value", body(t, &pgproto3.ParameterStatus{Name: "application_name", Value: ""}), "application_name", "", true},
		{"no value", []byte("TimeZone\x00"), "", "", false},
		{"unterminated value", []byte("TimeZone\x00UTC"), "", "", false},
		{"unterminated name", []byte("TimeZone"), "", "", false},
		{"empty", nil, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, v, ok := ParameterStatus(tt.body)
			if ok != tt.ok || ok && (string(k) != tt.key || string(v) != tt.value) {
				t.Fatalf("got %q %q %v", k, v, ok)
			}
		})
	}
	b := tests[0].body
	if n := testing.AllocsPerRun(100, func() { ParameterStatus(b) }); n != 0 {
		t.Fatalf("ParameterStatus allocates %v", n)
	}
}

func TestCString(t *testing.T) {
	s, rest, ok := CString([]byte("abc\x00def"))
	if !ok || string(s) != "abc" || string(rest) != "def" {
		t.Fatalf("%q %q %v", s, rest, ok)
	}
	s, rest, ok = CString([]byte("\x00"))
	if !ok || len(s) != 0 || len(rest) != 0 {
		t.Fatalf("%q %q %v", s, rest, ok)
	}
	if _, _, ok := CString([]byte("abc")); ok {
		t.Fatal("unterminated string accepted")
	}
}

func TestAppendHeader(t *testing.T) {
	for _, m := range []interface{ Encode([]byte) ([]byte, error) }{
		&pgproto3.Sync{},
		&pgproto3.Query{String: "SELECT 1"},
		&pgproto3.CopyData{Data: pattern(70000, 1)},
	} {
		enc := encode(t, m)
		h := AppendHeader([]byte("prefix"), enc[0], len(enc)-HeaderLen)
		if !bytes.Equal(h, append([]byte("prefix"), enc[:HeaderLen]...)) {
			t.Fatalf("%T: header %x, pgproto3 %x", m, h[6:], enc[:HeaderLen])
		}
	}
}

func TestErrorField(t *testing.T) {
	b := body(t, &pgproto3.ErrorResponse{
		Severity: "FEHLER", SeverityUnlocalized: "ERROR", Code: "0A000",
		Message: "gecachter Plan darf den Ergebniszeilentyp nicht ändern", Routine: "RevalidateCachedQuery",
	})
	if got := string(ErrorField(b, 'R')); got != "RevalidateCachedQuery" {
		t.Errorf("routine %q", got)
	}
	if got := ErrorField(b, 'D'); got != nil {
		t.Errorf("absent detail %q, want nil", got)
	}
	if got := ErrorMessage(b); got != "gecachter Plan darf den Ergebniszeilentyp nicht ändern" {
		t.Errorf("message %q", got)
	}
	if got := ErrorField([]byte("SERROR\x00Rtrunc"), 'R'); got != nil {
		t.Errorf("truncated field %q, want nil", got)
	}
}
