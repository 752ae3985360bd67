package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is one problem found in a configuration. Load, Parse and Validate
// return a single *Error, or several joined with errors.Join (use errors.As
// to get at them).
type Error struct {
	Line    int    // 1-based line in the file; 0 when unknown or not from a file
	Key     string // full dotted key, e.g. "databases.app.pool.size"; "" for syntax errors
	Msg     string // what is wrong
	Unknown bool   // Key is not part of the schema (Msg may hold a suggestion)

	path toml.Key // Key in pieces, to find its line
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	switch {
	case e.Unknown:
		fmt.Fprintf(&b, "unknown key %q", e.Key)
		if e.Msg != "" {
			b.WriteString(" " + e.Msg)
		}
	case e.Key != "":
		b.WriteString(e.Key + ": " + e.Msg)
	default:
		b.WriteString(e.Msg)
	}
	return b.String()
}

func keyError(path toml.Key, format string, args ...any) *Error {
	return &Error{Key: path.String(), Msg: fmt.Sprintf(format, args...), path: path}
}

// joinErrors returns nil, the only error, or all of them joined.
func joinErrors(errs []*Error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

// Load reads the TOML file at path. Relative paths inside it are resolved
// against the file's directory, and Path is set to the file's absolute path.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data, filepath.Dir(abs))
	if err != nil {
		return nil, err
	}
	c.Path = abs
	return c, nil
}

// Parse decodes and validates a TOML document. Relative paths in it are
// resolved against baseDir, or left as written when baseDir is "".
func Parse(data []byte, baseDir string) (*Config, error) {
	text := string(data)
	// Syntax first, on its own: the typed decode below reports its first
	// problem with the last key it saw, which would blame a key for what is
	// a syntax error.
	if _, err := toml.Decode(text, &struct{}{}); err != nil {
		e := decodeError(err)
		e.Key, e.path = "", nil
		return nil, e
	}
	f := fileConfig{Config: *Default()}
	md, err := toml.Decode(text, &f)
	if err != nil {
		return nil, decodeError(err)
	}
	p := &parser{md: &md, text: text}
	c := p.build(&f)
	p.unknownKeys()
	resolvePaths(c, baseDir)
	p.errs = append(p.errs, check(c, p.defined)...)
	if len(p.errs) > 0 {
		return nil, p.result()
	}
	return c, nil
}

// Validate checks a Config built or modified in code, with the rules Parse
// applies. Per-database settings are checked as they are: Validate does not
// merge the global sections into them (NewDatabase does).
func (c *Config) Validate() error {
	return joinErrors(check(c, nil))
}

// The file is decoded into these, which shadow the fields of the public
// types that need more than a plain decode: parameters take any scalar, and
// a database's pool and recycle sections are applied on top of the global
// ones once those are known.
type (
	fileConfig struct {
		Config
		Parameters rawParams                `toml:"parameters"`
		Databases  map[string]*fileDatabase `toml:"databases"`
		Users      map[string]*fileUser     `toml:"users"`
	}
	fileDatabase struct {
		Database
		Parameters rawParams      `toml:"parameters"`
		Pool       toml.Primitive `toml:"pool"`
		Recycle    toml.Primitive `toml:"recycle"`
	}
	fileUser struct {
		User
		Parameters rawParams `toml:"parameters"`
	}
)

// rawParams keeps a parameters table as decoded, so that its values can be
// converted (and refused) one by one with their own key in the message.
type rawParams map[string]any

// UnmarshalTOML implements toml.Unmarshaler.
func (r *rawParams) UnmarshalTOML(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("wrong type: want table, got %s", tomlTypeName(fmt.Sprintf("%T", v)))
	}
	*r = m
	return nil
}

type parser struct {
	md   *toml.MetaData
	text string
	errs []*Error
}

func (p *parser) defined(key toml.Key) bool { return p.md.IsDefined(key...) }

func sub(path toml.Key, more ...string) toml.Key {
	return append(path[:len(path):len(path)], more...)
}

// build turns the decoded file into a Config with every database's
// effective settings.
func (p *parser) build(f *fileConfig) *Config {
	c := f.Config
	c.Parameters = p.params(toml.Key{"parameters"}, f.Parameters)
	c.Databases = make(map[string]*Database, len(f.Databases))
	for _, name := range slices.Sorted(maps.Keys(f.Databases)) {
		base := toml.Key{"databases", name}
		var d Database
		if fd := f.Databases[name]; fd != nil {
			d = fd.Database
			// Defaults pre-filled before decoding would be simpler, but the
			// decoder allocates map entries itself; IsDefined keeps an
			// explicit "port = 0" distinct from an absent port.
			if !p.defined(sub(base, "port")) {
				d.Port = DefaultDatabasePort
			}
			if !p.defined(sub(base, "dbname")) && name != FallbackDatabase {
				d.DBName = name // the fallback's is the client's database
			}
			if !p.defined(sub(base, "sslmode")) {
				d.SSLMode = DefaultSSLMode
			}
			d.Pool, d.Recycle = c.Pool, c.Recycle
			// Decoding a section onto a copy of the global values sets only
			// the keys the section has: that is the partial override.
			p.primitive(sub(base, "pool"), fd.Pool, &d.Pool)
			p.primitive(sub(base, "recycle"), fd.Recycle, &d.Recycle)
			d.Parameters = maps.Clone(c.Parameters)
			maps.Copy(d.Parameters, p.params(sub(base, "parameters"), fd.Parameters))
		}
		d.Name = name
		c.Databases[name] = &d
	}
	c.Users = make(map[string]*User, len(f.Users))
	for _, name := range slices.Sorted(maps.Keys(f.Users)) {
		var u User
		if fu := f.Users[name]; fu != nil {
			u = fu.User
			u.Parameters = p.params(toml.Key{"users", name, "parameters"}, fu.Parameters)
		}
		c.Users[name] = &u
	}
	return &c
}

func (p *parser) primitive(key toml.Key, prim toml.Primitive, dst any) {
	if !p.defined(key) {
		return
	}
	if err := p.md.PrimitiveDecode(prim, dst); err != nil {
		p.errs = append(p.errs, decodeError(err))
	}
}

// params converts a parameters table to strings under lower-case names.
// A nested table names a dotted parameter: TOML reads `myext.limit = 1` as
// a table myext holding limit, while the user meant the PostgreSQL setting
// "myext.limit".
func (p *parser) params(path toml.Key, raw rawParams) map[string]string {
	out := make(map[string]string, len(raw))
	first := map[string]string{}
	var walk func(key toml.Key, prefix string, m map[string]any)
	walk = func(key toml.Key, prefix string, m map[string]any) {
		for _, name := range slices.Sorted(maps.Keys(m)) {
			k, full := sub(key, name), prefix+name
			if nested, ok := m[name].(map[string]any); ok {
				walk(k, full+".", nested)
				continue
			}
			lower := strings.ToLower(full)
			if prev, dup := first[lower]; dup {
				p.errs = append(p.errs, keyError(k, "same parameter as %q (names are case-insensitive)", prev))
				continue
			}
			first[lower] = full
			v, err := paramString(m[name])
			if err != nil {
				p.errs = append(p.errs, keyError(k, "%v", err))
				continue
			}
			out[lower] = v
		}
	}
	walk(path, "", raw)
	return out
}

// paramString gives the text PostgreSQL would accept for a TOML scalar.
func paramString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return "", errors.New("must be a finite number")
		}
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		if x {
			return "on", nil
		}
		return "off", nil
	}
	return "", fmt.Errorf("wrong type: want string, number or boolean, got %s", tomlTypeName(fmt.Sprintf("%T", v)))
}

// unknownKeys refuses every key the schema does not have: keys the decoder
// left alone, and keys it matched only case-insensitively (the decoder
// accepts "Size" for "size"; a config that works by accident is a trap).
func (p *parser) unknownKeys() {
	undecoded := map[string]bool{}
	for _, k := range p.md.Undecoded() {
		undecoded[k.String()] = true
	}
	unknown := map[string]bool{}
	var keys []toml.Key
	for _, k := range p.md.Keys() {
		if undecoded[k.String()] || !schemaKnows(k) {
			unknown[k.String()] = true
			keys = append(keys, k)
		}
	}
	var errs []*Error
outer:
	for _, k := range keys {
		// Report only the outermost: a misspelled table makes all of its
		// keys unknown too.
		for i := 1; i < len(k); i++ {
			if unknown[k[:i].String()] {
				continue outer
			}
		}
		e := &Error{Key: k.String(), Unknown: true, path: k, Line: lineOf(p.text, k)}
		if s := suggest(k); s != "" {
			e.Msg = fmt.Sprintf("(did you mean %q?)", s)
		}
		errs = append(errs, e)
	}
	sort.SliceStable(errs, func(i, j int) bool {
		if errs[i].Line != errs[j].Line {
			return errs[i].Line < errs[j].Line
		}
		return errs[i].Key < errs[j].Key
	})
	p.errs = append(p.errs, errs...)
}

// result fills in line numbers and orders the errors as the file reads,
// those without a line last.
func (p *parser) result() error {
	for _, e := range p.errs {
		// A key that is not in the file (a required one, or a value
		// inherited from a default) points at its section instead.
		for k := e.path; e.Line == 0 && len(k) > 0; k = k[:len(k)-1] {
			e.Line = lineOf(p.text, k)
		}
	}
	sort.SliceStable(p.errs, func(i, j int) bool {
		li, lj := p.errs[i].Line, p.errs[j].Line
		if (li == 0) != (lj == 0) {
			return lj == 0
		}
		return li < lj
	})
	return joinErrors(p.errs)
}

func resolvePaths(c *Config, baseDir string) {
	if baseDir == "" {
		return
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(baseDir, p)
	}
	c.Auth.File = abs(c.Auth.File)
	c.TLS.CertFile = abs(c.TLS.CertFile)
	c.TLS.KeyFile = abs(c.TLS.KeyFile)
	c.TLS.ClientCAFile = abs(c.TLS.ClientCAFile)
	c.Listen.UnixSocketDir = abs(c.Listen.UnixSocketDir)
	for _, d := range c.Databases {
		// "system" asks libpq-compatible clients for the system CA store.
		if d.SSLRootCert != "system" {
			d.SSLRootCert = abs(d.SSLRootCert)
		}
	}
}

// decodeError turns a decoder error into an *Error naming the key and line.
// Type errors come as plain errors formatted
// `toml: line N (last key "K"): MSG`, so they are taken apart here; anything
// else is passed on with its text.
func decodeError(err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
	}
	s := strings.TrimPrefix(err.Error(), "toml: ")
	e := &Error{Msg: s}
	line := 0
	if rest, ok := strings.CutPrefix(s, "line "); ok {
		n, after, _ := strings.Cut(rest, " ")
		line, _ = strconv.Atoi(n)
		s = after
	}
	if rest, ok := strings.CutPrefix(s, "(last key "); ok {
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			if msg, ok := strings.CutPrefix(rest[len(q):], "): "); ok {
				e.Key, _ = strconv.Unquote(q)
				e.Msg, e.Line = friendlyTypeError(msg), line
			}
		}
	}
	return e
}

// friendlyTypeError rewrites the decoder's type messages, which name Go
// types, in TOML's terms.
func friendlyTypeError(msg string) string {
	if rest, ok := strings.CutPrefix(msg, "incompatible types: TOML value has type "); ok {
		if got, want, ok := strings.Cut(rest, "; destination has type "); ok {
			return fmt.Sprintf("wrong type: want %s, got %s", tomlTypeName(want), tomlTypeName(got))
		}
	}
	if rest, ok := strings.CutPrefix(msg, "type mismatch for "); ok {
		if _, got, ok := strings.Cut(rest, ": expected table but found "); ok {
			return "wrong type: want table, got " + tomlTypeName(got)
		}
	}
	return msg
}

func tomlTypeName(t string) string {
	switch t {
	case "int64", "integer":
		return "integer"
	case "float64", "float":
		return "float"
	case "bool", "boolean":
		return "boolean"
	case "string", "primitive (string-like)":
		return "string"
	case "map", "map[string]any", "map[string]interface {}":
		return "table"
	case "slice", "[]any", "[]interface {}":
		return "array"
	case "[]map[string]any", "[]map[string]interface {}":
		return "array of tables"
	}
	if strings.HasPrefix(t, "time.") || strings.HasPrefix(t, "toml.Local") {
		return "datetime"
	}
	return t
}

// Schema walking: the struct tags of Config are the one description of the
// file's keys; unknown-key checks, suggestions, Diff and the example-file
// test all read them.

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}

func fieldByTOMLName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); tomlName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// schemaType follows key from Config. Below a map of strings (a
// parameters table) anything is accepted here: values are checked when
// converted.
func schemaType(key []string) (reflect.Type, bool) {
	t := reflect.TypeOf(Config{})
	for _, piece := range key {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		// An array of tables ([[hba]]): its keys carry no index.
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			f, ok := fieldByTOMLName(t, piece)
			if !ok {
				return nil, false
			}
			t = f.Type
		case reflect.Map:
			if t.Elem().Kind() == reflect.String {
				return t.Elem(), true
			}
			t = t.Elem()
		default:
			return nil, false
		}
	}
	return t, true
}

func schemaKnows(key []string) bool {
	_, ok := schemaType(key)
	return ok
}

// schemaChildren lists the key names a table of the schema may hold.
func schemaChildren(parent []string) []string {
	t, ok := schemaType(parent)
	if !ok {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		if n := tomlName(t.Field(i)); n != "" {
			names = append(names, n)
		}
	}
	return names
}

// schemaLeaves lists every key of the schema, "*" standing for a map key
// (a database, a user, a parameter name).
func schemaLeaves() []toml.Key {
	var out []toml.Key
	var walk func(t reflect.Type, path toml.Key)
	walk = func(t reflect.Type, path toml.Key) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			for i := range t.NumField() {
				if n := tomlName(t.Field(i)); n != "" {
					walk(t.Field(i).Type, sub(path, n))
				}
			}
		case reflect.Map:
			if t.Elem().Kind() == reflect.String {
				out = append(out, sub(path, "*"))
				return
			}
			walk(t.Elem(), sub(path, "*"))
		case reflect.Slice:
			if t.Elem().Kind() == reflect.Struct {
				walk(t.Elem(), path)
				return
			}
			out = append(out, path)
		default:
			out = append(out, path)
		}
	}
	walk(reflect.TypeOf(Config{}), nil)
	return out
}

// suggest names the known sibling closest to a misspelled key, or "".
func suggest(k toml.Key) string {
	parent, last := k[:len(k)-1], k[len(k)-1]
	best, bestDist := "", math.MaxInt
	for _, n := range schemaChildren(parent) {
		if strings.EqualFold(n, last) {
			best, bestDist = n, 0
			break
		}
		if d := editDistance(n, last); d < bestDist {
			best, bestDist = n, d
		}
	}
	// Two edits turn a short word into an unrelated one ("foo", "pool"):
	// suggest only what is plausibly a typo.
	if best == "" || bestDist > 2 || bestDist == 2 && len(last) < 5 {
		return ""
	}
	return sub(parent, best).String()
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent bytes ("hots")
// cost one each.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// Finding a key's line: the decoder knows every key's position but only
// tells it in errors. So decode into a type that has exactly one path, the
// key's, ending in a value that always fails: the error carries the line.

type probe struct{}

type probeHit struct{}

func (probeHit) Error() string { return "probe" }

// UnmarshalTOML implements toml.Unmarshaler.
func (*probe) UnmarshalTOML(any) error { return probeHit{} }

// lineOf returns the line where key is defined in text, or 0.
func lineOf(text string, key toml.Key) int {
	t := reflect.TypeOf(probe{})
	for i := len(key) - 1; i >= 0; i-- {
		// A tag cannot spell these names.
		if key[i] == "" || key[i] == "-" || strings.ContainsRune(key[i], ',') {
			return 0
		}
		t = reflect.StructOf([]reflect.StructField{{
			Name: "F",
			Type: t,
			Tag:  reflect.StructTag("toml:" + strconv.Quote(key[i])),
		}})
	}
	_, err := toml.Decode(text, reflect.New(t).Interface())
	var pe toml.ParseError
	// The decoder also matches names case-insensitively; make sure the hit
	// is the key asked for.
	if errors.As(err, &pe) && pe.LastKey == key.String() {
		return pe.Position.Line
	}
	return 0
}

// Validation.

type problem struct{ key, msg string }

func problemf(key, format string, args ...any) problem {
	return problem{key, fmt.Sprintf(format, args...)}
}

func oneOf(v string, allowed ...string) bool { return slices.Contains(allowed, v) }

func quoteList(allowed []string) string {
	q := make([]string, len(allowed))
	for i, a := range allowed {
		q[i] = strconv.Quote(a)
	}
	return strings.Join(q, ", ")
}

func enum(key, v string, allowed ...string) []problem {
	if oneOf(v, allowed...) {
		return nil
	}
	return []problem{problemf(key, "must be one of %s, not %q", quoteList(allowed), v)}
}

func atLeast(key string, v int64, lo int64) []problem {
	if v >= lo {
		return nil
	}
	if lo == 0 {
		return []problem{problemf(key, "must not be negative")}
	}
	return []problem{problemf(key, "must be at least %d", lo)}
}

func nonNegative(key string, d Duration) []problem {
	if d >= 0 {
		return nil
	}
	return []problem{problemf(key, "must not be negative")}
}

func poolProblems(p Pool) []problem {
	var ps []problem
	ps = append(ps, enum("mode", p.Mode, "session", "transaction")...)
	ps = append(ps, atLeast("size", int64(p.Size), 1)...)
	ps = append(ps, atLeast("min_idle", int64(p.MinIdle), 0)...)
	if p.Size >= 1 && p.MinIdle > p.Size {
		ps = append(ps, problemf("min_idle", "must not exceed size (%d)", p.Size))
	}
	ps = append(ps, atLeast("max_db_connections", int64(p.MaxDBConnections), 0)...)
	ps = append(ps, atLeast("max_db_client_connections", int64(p.MaxDBClientConnections), 0)...)
	ps = append(ps, nonNegative("query_wait_timeout", p.QueryWaitTimeout)...)
	if p.ServerConnectTimeout <= 0 {
		// No timeout would let one unreachable host hang the pool forever.
		ps = append(ps, problemf("server_connect_timeout", "must be greater than 0"))
	}
	if p.ServerLoginRetry <= 0 {
		// It caps the reconnect backoff; 0 would reconnect in a tight loop.
		ps = append(ps, problemf("server_login_retry", "must be greater than 0"))
	}
	ps = append(ps, nonNegative("server_idle_timeout", p.ServerIdleTimeout)...)
	ps = append(ps, nonNegative("server_check_delay", p.ServerCheckDelay)...)
	ps = append(ps, nonNegative("client_idle_timeout", p.ClientIdleTimeout)...)
	ps = append(ps, nonNegative("idle_transaction_timeout", p.IdleTransactionTimeout)...)
	ps = append(ps, atLeast("max_prepared_statements", int64(p.MaxPreparedStatements), 0)...)
	ps = append(ps, atLeast("max_concurrent_connects", int64(p.MaxConcurrentConnects), 1)...)
	ps = append(ps, atLeast("reserve_pool_size", int64(p.ReservePoolSize), 0)...)
	ps = append(ps, nonNegative("reserve_pool_timeout", p.ReservePoolTimeout)...)
	return ps
}

func recycleProblems(r Recycle) []problem {
	var ps []problem
	ps = append(ps, nonNegative("max_lifetime", r.MaxLifetime)...)
	if !(r.LifetimeJitter >= 0 && r.LifetimeJitter < 1) {
		ps = append(ps, problemf("lifetime_jitter", "must be at least 0 and less than 1, not %v", r.LifetimeJitter))
	}
	ps = append(ps, atLeast("max_queries", r.MaxQueries, 0)...)
	ps = append(ps, atLeast("max_transactions", r.MaxTransactions, 0)...)
	ps = append(ps, atLeast("max_memory", int64(r.MaxMemory), 0)...)
	ps = append(ps, nonNegative("memory_check_interval", r.MemoryCheckInterval)...)
	ps = append(ps, enum("memory_source", r.MemorySource, "contexts", "proc")...)
	if !(r.MaxRetiringShare > 0 && r.MaxRetiringShare <= 1) {
		ps = append(ps, problemf("max_retiring_share", "must be greater than 0 and at most 1, not %v", r.MaxRetiringShare))
	}
	return ps
}

func healthProblems(h Health) []problem {
	var ps []problem
	if h.Interval <= 0 {
		ps = append(ps, problemf("interval", "must be greater than 0"))
	}
	if h.QueryTimeout <= 0 {
		ps = append(ps, problemf("query_timeout", "must be greater than 0"))
	}
	fraction := func(key string, v, hi float64) {
		if !(v >= 0 && v <= hi) {
			ps = append(ps, problemf(key, "must be between 0 and %v, not %v", hi, v))
		}
	}
	fraction("memory_fraction", h.MemoryFraction, 1)
	fraction("xid_age_fraction", h.XIDAgeFraction, 10)
	fraction("dead_tuples_fraction", h.DeadTuplesFraction, 1)
	fraction("connections_fraction", h.ConnectionsFraction, 1)
	ps = append(ps, atLeast("generic_plan_partitions", int64(h.GenericPlanPartitions), 0)...)
	ps = append(ps, atLeast("dead_tuples", h.DeadTuples, 0)...)
	ps = append(ps, nonNegative("idle_in_transaction", h.IdleInTransaction)...)
	ps = append(ps, atLeast("bypass_connections", int64(h.BypassConnections), 0)...)
	return ps
}

// reservedParameter reports startup fields pgrecycle sets itself.
func reservedParameter(name string) bool {
	return oneOf(strings.ToLower(name), "user", "database", "replication")
}

// ValidParameterName reports whether s can name a PostgreSQL setting in
// SET or a StartupMessage: letters, digits, '_' and '.' (extension
// settings), not starting with a digit or a dot.
func ValidParameterName(s string) bool {
	if s == "" || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
		case (r >= '0' && r <= '9' || r == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}

func paramProblems(m map[string]string, skip func(name, value string) bool) []problem {
	var ps []problem
	for _, name := range slices.Sorted(maps.Keys(m)) {
		v := m[name]
		if skip != nil && skip(name, v) {
			continue
		}
		switch {
		case !ValidParameterName(name):
			ps = append(ps, problemf(name, `invalid parameter name: use letters, digits, "_" and "."`))
		case reservedParameter(name):
			ps = append(ps, problemf(name, "is set by pgrecycle itself (see databases.NAME.user and dbname)"))
		case strings.ContainsRune(v, 0):
			ps = append(ps, problemf(name, "must not contain a NUL byte"))
		}
	}
	return ps
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("invalid port %q", port)
	}
	return host, n, nil
}

func addrProblems(key, addr string) []problem {
	if _, _, err := splitHostPort(addr); err != nil {
		return []problem{problemf(key, "invalid address %q (%v): want host:port, e.g. \"127.0.0.1:6432\"", addr, err)}
	}
	return nil
}

// maxSocketPath is the room in sockaddr_un.sun_path (108 with the NUL) on
// Linux; longer paths fail at bind with an obscure error.
const maxSocketPath = 107

// check validates c. defined, when known, tells whether a key is written in
// the file; it decides whether a per-database value that repeats a global
// problem is worth reporting again.
func check(c *Config, defined func(toml.Key) bool) []*Error {
	var errs []*Error
	add := func(base toml.Key, ps []problem) {
		for _, p := range ps {
			errs = append(errs, keyError(sub(base, p.key), "%s", p.msg))
		}
	}
	// A dotted parameter name is named as the nested TOML key users most
	// likely wrote (parameters.myext.limit), which also finds its line.
	addParams := func(base toml.Key, ps []problem) {
		for _, p := range ps {
			errs = append(errs, keyError(sub(base, strings.Split(p.key, ".")...), "%s", p.msg))
		}
	}
	addOne := func(key toml.Key, format string, args ...any) {
		errs = append(errs, keyError(key, format, args...))
	}
	isDefined := func(k toml.Key) bool { return defined != nil && defined(k) }

	// [listen]
	l := c.Listen
	lk := toml.Key{"listen"}
	switch {
	case l.Addr == "" && l.UnixSocketDir == "":
		addOne(sub(lk, "addr"), "required unless listen.unix_socket_dir is set")
	case l.Addr != "":
		add(lk, addrProblems("addr", l.Addr))
	}
	if sp := l.SocketPath(); len(sp) > maxSocketPath {
		addOne(sub(lk, "unix_socket_dir"), "socket path %q is too long (at most %d bytes)", sp, maxSocketPath)
	}
	add(lk, atLeast("max_client_conn", int64(l.MaxClientConn), 1))
	add(lk, nonNegative("client_login_timeout", l.ClientLoginTimeout))
	add(lk, nonNegative("shutdown_timeout", l.ShutdownTimeout))
	add(lk, nonNegative("client_park_after", l.ClientParkAfter))
	add(lk, nonNegative("tcp_keepidle", l.TCPKeepIdle))
	add(lk, nonNegative("tcp_keepintvl", l.TCPKeepIntvl))
	add(lk, atLeast("tcp_keepcnt", int64(l.TCPKeepCnt), 0))
	add(lk, nonNegative("tcp_user_timeout", l.TCPUserTimeout))
	add(lk, atLeast("worker_threads", int64(l.WorkerThreads), 0))

	// [auth]
	ak := toml.Key{"auth"}
	add(ak, enum("type", c.Auth.Type, "trust", "plain", "md5", "scram-sha-256", "cert"))
	if c.Auth.File == "" && c.Auth.Type != "trust" && c.Auth.Type != "cert" {
		addOne(sub(ak, "file"), `required unless auth.type is "trust" or "cert"`)
	}
	usesCert := c.Auth.Type == "cert"
	for i, u := range c.Auth.AdminUsers {
		if u == "" {
			addOne(sub(ak, "admin_users"), "entry %d is empty", i+1)
		}
	}

	// [limits]
	add(toml.Key{"limits"}, atLeast("max_user_connections", int64(c.Limits.MaxUserConnections), 0))
	add(toml.Key{"limits"}, atLeast("max_user_client_connections", int64(c.Limits.MaxUserClientConnections), 0))

	// [pool], [recycle], [parameters]
	globalPool, globalRecycle := poolProblems(c.Pool), recycleProblems(c.Recycle)
	add(toml.Key{"pool"}, globalPool)
	add(toml.Key{"recycle"}, globalRecycle)
	addParams(toml.Key{"parameters"}, paramProblems(c.Parameters, nil))

	// A database inherits the global sections; a problem it inherits was
	// reported there already, unless the database's own section repeats it.
	inherited := func(base toml.Key, global, ps []problem) []problem {
		var out []problem
		for _, p := range ps {
			if slices.Contains(global, p) && !isDefined(sub(base, p.key)) {
				continue
			}
			out = append(out, p)
		}
		return out
	}

	for _, name := range slices.Sorted(maps.Keys(c.Databases)) {
		d := c.Databases[name]
		base := toml.Key{"databases", name}
		switch {
		case d == nil:
			addOne(base, "missing")
			continue
		case name == "":
			addOne(base, "database name must not be empty")
		case name == AdminDatabase:
			addOne(base, "the name %q is reserved for the admin console", AdminDatabase)
		}
		if d.Host == "" {
			addOne(sub(base, "host"), "required")
		}
		if d.Port < 1 || d.Port > 65535 {
			addOne(sub(base, "port"), "must be between 1 and 65535, not %d", d.Port)
		}
		if d.DBName == "" && name != FallbackDatabase {
			addOne(sub(base, "dbname"), "must not be empty")
		}
		add(base, enum("sslmode", d.SSLMode, "disable", "allow", "prefer", "require", "verify-ca", "verify-full"))
		add(sub(base, "pool"), inherited(sub(base, "pool"), globalPool, poolProblems(d.Pool)))
		add(sub(base, "recycle"), inherited(sub(base, "recycle"), globalRecycle, recycleProblems(d.Recycle)))
		addParams(sub(base, "parameters"), paramProblems(d.Parameters, func(n, v string) bool {
			g, ok := c.Parameters[n]
			return ok && g == v
		}))
	}

	for _, name := range slices.Sorted(maps.Keys(c.Users)) {
		u := c.Users[name]
		base := toml.Key{"users", name}
		switch {
		case u == nil:
			addOne(base, "missing")
			continue
		case name == "":
			addOne(base, "user name must not be empty")
		}
		addParams(sub(base, "parameters"), paramProblems(u.Parameters, nil))
		add(base, atLeast("max_user_connections", int64(u.MaxUserConnections), 0))
		add(base, atLeast("max_user_client_connections", int64(u.MaxUserClientConnections), 0))
	}

	for i, r := range c.HBA {
		base := toml.Key{"hba", strconv.Itoa(i)}
		add(base, enum("method", r.Method, "trust", "plain", "md5", "scram-sha-256", "cert", "reject"))
		usesCert = usesCert || r.Method == "cert"
		if r.Database == "" {
			addOne(sub(base, "database"), "required (a name or \"all\")")
		}
		if r.User == "" {
			addOne(sub(base, "user"), "required (a name or \"all\")")
		}
		switch {
		case r.Address == "":
			addOne(sub(base, "address"), "required (\"all\", \"local\", an IP or a CIDR)")
		case r.Address == "all" || r.Address == "local":
		default:
			if _, _, err := net.ParseCIDR(r.Address); err != nil && net.ParseIP(r.Address) == nil {
				addOne(sub(base, "address"), "%q is not \"all\", \"local\", an IP or a CIDR", r.Address)
			}
		}
	}
	if c.Auth.Query != "" && c.Auth.QueryUser == "" {
		addOne(toml.Key{"auth", "query_user"}, "required when auth.query is set")
	}
	if c.Auth.MaxFailedLogins < 0 {
		addOne(toml.Key{"auth", "max_failed_logins"}, "must not be negative")
	}
	add(toml.Key{"tls"}, enum("mode", c.TLS.Mode, "disable", "allow", "require"))
	add(toml.Key{"tls"}, enum("client_cert", c.TLS.ClientCert, "none", "verify", "require"))
	switch {
	case c.TLS.ClientCert != "none" && c.TLS.ClientCAFile == "":
		addOne(toml.Key{"tls", "client_ca_file"}, "required unless tls.client_cert = \"none\"")
	case c.TLS.ClientCert != "none" && c.TLS.Mode == "disable":
		addOne(toml.Key{"tls", "client_cert"}, "needs tls.mode \"allow\" or \"require\"")
	case usesCert && c.TLS.ClientCert == "none":
		addOne(toml.Key{"tls", "client_cert"}, "the cert authentication method needs client certificates: set \"verify\" or \"require\" and tls.client_ca_file")
	}
	if c.TLS.Mode != "disable" {
		if c.TLS.CertFile == "" {
			addOne(toml.Key{"tls", "cert_file"}, "required unless tls.mode = \"disable\"")
		}
		if c.TLS.KeyFile == "" {
			addOne(toml.Key{"tls", "key_file"}, "required unless tls.mode = \"disable\"")
		}
	}
	if c.Metrics.Addr != "" {
		add(toml.Key{"metrics"}, addrProblems("addr", c.Metrics.Addr))
	}
	add(toml.Key{"health"}, healthProblems(c.Health))
	add(toml.Key{"log"}, enum("level", c.Log.Level, "debug", "info", "warn", "error"))
	add(toml.Key{"log"}, enum("format", c.Log.Format, "json", "console"))
	return errs
}
