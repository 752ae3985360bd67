package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a Go duration string
// ("10s", "1m30s", "1h", "0"). Negative durations are refused: no setting
// has a meaning for them.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String gives the shortest Go form, "1h" rather than "1h0m0s", so that
// SHOW CONFIG and the encoded TOML read like what users write.
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		// time's own message ("missing unit in duration") does not say what
		// is accepted; a bare number is the usual mistake (PgBouncer uses
		// seconds, PostgreSQL milliseconds), so show the syntax.
		return 0, fmt.Errorf("invalid duration %q: want a number with a unit (ms, s, m, h), e.g. \"90s\" or \"1h30m\"", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return Duration(v), nil
}

// ByteSize is a number of bytes, written in TOML as a string with a
// PostgreSQL-style unit ("512kB", "64MB", "1GB"; 1kB = 1024 bytes), a string
// of bytes ("123", "123B"), or a TOML integer (bytes). Negative sizes are
// refused.
type ByteSize int64

// Byte size units, 1024-based as in PostgreSQL.
const (
	KB ByteSize = 1 << 10
	MB ByteSize = 1 << 20
	GB ByteSize = 1 << 30
	TB ByteSize = 1 << 40
)

// String gives the largest unit that represents b exactly, so that the
// value parses back unchanged: "64MB", "1536kB", "100B", "0".
func (b ByteSize) String() string {
	if b == 0 {
		return "0"
	}
	for _, u := range [...]struct {
		size   ByteSize
		suffix string
	}{{TB, "TB"}, {GB, "GB"}, {MB, "MB"}, {KB, "kB"}} {
		if b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// MarshalText implements encoding.TextMarshaler.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. The TOML decoder also
// hands integers here, as decimal text.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := parseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// byteUnit maps a unit to its multiplier. Case is ignored: in a byte size
// "mb" can only mean megabytes, and refusing it would only annoy.
func byteUnit(u string) (ByteSize, bool) {
	switch strings.ToLower(u) {
	case "", "b":
		return 1, true
	case "kb", "kib":
		return KB, true
	case "mb", "mib":
		return MB, true
	case "gb", "gib":
		return GB, true
	case "tb", "tib":
		return TB, true
	}
	return 0, false
}

func parseByteSize(s string) (ByteSize, error) {
	bad := func(why string) (ByteSize, error) {
		return 0, fmt.Errorf("invalid size %q: %s", s, why)
	}
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-") {
		return bad("must not be negative")
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	mult, ok := byteUnit(unit)
	if num == "" || !ok {
		return bad(`want a number of bytes or a number with a unit (B, kB, MB, GB, TB; 1kB = 1024 bytes), e.g. "64MB"`)
	}
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil || n > math.MaxInt64/int64(mult) {
			return bad("too large")
		}
		return ByteSize(n) * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return bad("not a number")
	}
	if mult == 1 && f != math.Trunc(f) {
		return bad("not a whole number of bytes")
	}
	// Fractions of a unit ("1.5GB") are rounded to the byte, as PostgreSQL does.
	v := math.Round(f * float64(mult))
	if v >= math.MaxInt64 {
		return bad("too large")
	}
	return ByteSize(v), nil
}
