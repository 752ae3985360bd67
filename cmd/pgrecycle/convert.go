package main

// pgrecycle convert-pgbouncer: read a PgBouncer configuration (pgbouncer.ini
// and its %include files) and print the equivalent pgrecycle TOML. Every
// PgBouncer setting is either mapped, or listed in a comment with the
// reason it has no equivalent; nothing is dropped silently.

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pgrecycle/pgrecycle/config"
	"github.com/pgrecycle/pgrecycle/proxy/auth"
)

// convertCommand is the subcommand name: `pgrecycle convert-pgbouncer ...`.
const convertCommand = "convert-pgbouncer"

const convertUsage = `usage: pgrecycle convert-pgbouncer pgbouncer.ini [userlist.txt] > pgrecycle.toml

Prints a pgrecycle configuration equivalent to a PgBouncer one. Settings
without an equivalent are listed as comments with the reason. The optional
userlist.txt (PgBouncer's auth_file format) is only checked: that it parses,
and which kinds of secrets it holds.

Exit status: 0 converted, 1 the result does not pass pgrecycle's own checks
(a bug: please report it), 2 bad usage, unreadable or invalid input.
`

// runConvert implements the convert-pgbouncer subcommand; args follow the
// subcommand name.
func runConvert(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pgrecycle "+convertCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, convertUsage) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fmt.Fprint(stderr, convertUsage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "pgrecycle %s: %v\n", convertCommand, err)
		return 2
	}
	ini, err := readPgBouncerINI(fs.Arg(0))
	if err != nil {
		return fail(fmt.Errorf("cannot read the PgBouncer configuration: %w", err))
	}
	var users *userlistSummary
	if fs.NArg() == 2 {
		if users, err = summarizeUserlist(fs.Arg(1)); err != nil {
			return fail(fmt.Errorf("cannot read the userlist: %w", err))
		}
	}
	res, err := convertPgBouncer(ini, fs.Arg(0), users)
	if err != nil {
		return fail(err)
	}
	if _, err := stdout.Write(res.TOML); err != nil {
		return fail(err)
	}
	// The output is meant to be used as is: check it the way pgrecycle
	// will at start.
	if _, err := config.Parse(res.TOML, ""); err != nil {
		fmt.Fprintf(stderr, "pgrecycle %s: the converted configuration does not pass pgrecycle's checks; this is a bug, please report it with the input:\n%v\n", convertCommand, err)
		return 1
	}
	fmt.Fprintf(stderr, "pgrecycle %s: %d database(s) converted; %d setting(s) without an equivalent are listed as comments at the end; review every NOTE\n",
		convertCommand, res.Databases, res.Unconverted)
	return 0
}

// ---------------------------------------------------------------------------
// Reading pgbouncer.ini

// iniEntry is one `key = value` line.
type iniEntry struct {
	Section string // databases | pgbouncer | users | peers
	Key     string // unquoted
	Value   string // rest of the line, trimmed
	Pos     string // "file:line", for messages
}

// maxIncludeDepth is how deep %include may nest, as in PgBouncer.
const maxIncludeDepth = 10

var iniSections = []string{"databases", "pgbouncer", "users", "peers"}

// readPgBouncerINI reads a PgBouncer configuration file. The format: lines
// of `key = value` under [section] headers, comment lines starting with ';'
// or '#', and `%include FILE` lines. A key is a run of letters, digits and
// "_.-*", or quoted. The value is the rest of the line.
func readPgBouncerINI(path string) ([]iniEntry, error) {
	var out []iniEntry
	section := ""
	if err := readINIFile(path, 0, &section, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func readINIFile(path string, depth int, section *string, out *[]iniEntry) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if !utf8.Valid(data) {
		return fmt.Errorf("%s: not UTF-8 text", path)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for lineNo := 1; sc.Scan(); lineNo++ {
		pos := path + ":" + strconv.Itoa(lineNo)
		line := strings.TrimSpace(sc.Text())
		if lineNo == 1 {
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		switch {
		case line == "", line[0] == ';', line[0] == '#':
			continue
		case strings.HasPrefix(line, "%include") && len(line) > 8 && (line[8] == ' ' || line[8] == '\t'):
			if depth >= maxIncludeDepth {
				return fmt.Errorf("%s: %%include nested more than %d deep", pos, maxIncludeDepth)
			}
			inc := strings.TrimSpace(line[8:])
			if err := readINIFile(includePath(inc, path), depth+1, section, out); err != nil {
				return fmt.Errorf("%s: %%include %s: %w", pos, inc, err)
			}
			continue
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return fmt.Errorf("%s: syntax error: section header without ']'", pos)
			}
			if rest := strings.TrimSpace(line[end+1:]); rest != "" {
				return fmt.Errorf("%s: syntax error: unexpected %q after the section header", pos, rest)
			}
			name := line[1:end]
			if !slices.Contains(iniSections, name) {
				return fmt.Errorf("%s: unknown section [%s]: PgBouncer knows [databases], [pgbouncer], [users] and [peers]", pos, name)
			}
			*section = name
			continue
		}
		key, value, err := splitINILine(line)
		if err != nil {
			return fmt.Errorf("%s: syntax error: %v", pos, err)
		}
		if *section == "" {
			return fmt.Errorf("%s: syntax error: %q comes before any [section]", pos, key)
		}
		*out = append(*out, iniEntry{Section: *section, Key: key, Value: value, Pos: pos})
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// includePath resolves an %include name: PgBouncer takes a relative name
// against its working directory; when no such file exists there, the
// directory of the including file is tried, which is what a converter run
// from elsewhere needs.
func includePath(name, from string) string {
	if filepath.IsAbs(name) {
		return name
	}
	if _, err := os.Stat(name); err == nil {
		return name
	}
	if alt := filepath.Join(filepath.Dir(from), name); fileExists(alt) {
		return alt
	}
	return name
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// splitINILine splits `key = value`.
func splitINILine(line string) (key, value string, err error) {
	rest := line
	switch q := line[0]; q {
	case '\'', '"':
		// Quoted key; a doubled quote stands for itself.
		var b strings.Builder
		i := 1
		for {
			if i >= len(line) {
				return "", "", fmt.Errorf("unterminated quoted name")
			}
			if line[i] == q {
				if i+1 < len(line) && line[i+1] == q {
					b.WriteByte(q)
					i += 2
					continue
				}
				break
			}
			b.WriteByte(line[i])
			i++
		}
		key, rest = b.String(), line[i+1:]
		if key == "" {
			return "", "", fmt.Errorf("empty quoted name")
		}
	default:
		i := 0
		for i < len(line) && isINIKeyByte(line[i]) {
			i++
		}
		key, rest = line[:i], line[i:]
	}
	rest = strings.TrimLeft(rest, " \t")
	if key == "" || !strings.HasPrefix(rest, "=") {
		return "", "", fmt.Errorf(`expected "name = value"`)
	}
	return key, strings.TrimSpace(rest[1:]), nil
}

func isINIKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.-*", c) >= 0
}

// connParam is one key=value of a [databases] (or [users], [peers])
// connection string.
type connParam struct{ Key, Value string }

// parseConnString parses PgBouncer's connection strings: key=value pairs
// separated by spaces; a value may be single-quoted, a doubled quote
// standing for one quote.
// Empty values are refused, as PgBouncer does.
func parseConnString(s string) ([]connParam, error) {
	var out []connParam
	i := 0
	skip := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	for {
		skip()
		if i >= len(s) {
			return out, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' && s[i] != '\t' {
			i++
		}
		key := s[start:i]
		skip()
		if key == "" || i >= len(s) || s[i] != '=' {
			return nil, fmt.Errorf("connection string: expected key=value at %q", s[start:])
		}
		i++
		skip()
		var val string
		if i < len(s) && s[i] == '\'' {
			var b strings.Builder
			i++
			for {
				if i >= len(s) {
					return nil, fmt.Errorf("connection string: unterminated quoted value of %s", key)
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			val = b.String()
		} else {
			start := i
			for i < len(s) && s[i] != ' ' && s[i] != '\t' {
				i++
			}
			val = s[start:i]
		}
		if val == "" {
			return nil, fmt.Errorf("connection string: empty value for %s", key)
		}
		out = append(out, connParam{key, val})
	}
}

// ---------------------------------------------------------------------------
// The userlist

type userlistSummary struct {
	Path                          string
	Users                         int
	Plain, MD5, SCRAM, NoPassword int
}

func summarizeUserlist(path string) (*userlistSummary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	list, err := auth.ParseUserList(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &userlistSummary{Path: path, Users: len(list)}
	for _, sec := range list {
		switch sec.Kind {
		case auth.KindPlain:
			s.Plain++
		case auth.KindMD5:
			s.MD5++
		case auth.KindSCRAM:
			s.SCRAM++
		default:
			s.NoPassword++
		}
	}
	return s, nil
}

// ---------------------------------------------------------------------------
// Writing TOML

// tomlLine is a `key = value` line with an optional trailing comment, or,
// with Key "", a comment line of its own. Key is written as is: it is a bare
// key, or a dotted parameter name (myext.limit), which pgrecycle reads as
// the parameter "myext.limit".
type tomlLine struct {
	Key, Value, Note string
}

type tomlSection struct {
	Header    string   // table name, already quoted where needed
	Comments  []string // comment lines above the header
	Lines     []tomlLine
	Commented bool // write everything as comments (a template, not config)
}

func (s *tomlSection) set(key, value, note string) {
	s.Lines = append(s.Lines, tomlLine{Key: key, Value: value, Note: note})
}

func (s *tomlSection) comment(text string) {
	s.Lines = append(s.Lines, tomlLine{Note: text})
}

// noteColumn is where trailing comments start, as in pgrecycle.example.toml.
const noteColumn = 31

func renderSections(b *bytes.Buffer, sections []*tomlSection) {
	for _, s := range sections {
		if len(s.Lines) == 0 && len(s.Comments) == 0 {
			continue
		}
		prefix := ""
		if s.Commented {
			prefix = "#"
		}
		b.WriteByte('\n')
		for _, c := range s.Comments {
			writeComment(b, "", c)
		}
		if s.Header != "" {
			fmt.Fprintf(b, "%s[%s]\n", prefix, s.Header)
		}
		for _, l := range s.Lines {
			if l.Key == "" {
				writeComment(b, "", l.Note)
				continue
			}
			kv := prefix + l.Key + " = " + l.Value
			if l.Note == "" {
				b.WriteString(kv + "\n")
				continue
			}
			if pad := noteColumn - len(kv); pad > 0 {
				kv += strings.Repeat(" ", pad)
			} else {
				kv += " "
			}
			b.WriteString(kv + "# " + oneLine(l.Note) + "\n")
		}
	}
}

// writeComment writes text as comment lines wrapped at 78 columns, each
// line starting with "# " and indent.
func writeComment(b *bytes.Buffer, indent, text string) {
	const width = 78
	words := strings.Fields(oneLine(text))
	if len(words) == 0 {
		b.WriteString("#\n")
		return
	}
	line := "# " + indent + words[0]
	for _, w := range words[1:] {
		if len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = "# " + indent + w
			continue
		}
		line += " " + w
	}
	b.WriteString(line + "\n")
}

func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

func isBareKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// tomlKey writes a key: bare when it can be, else quoted.
func tomlKey(k string) string {
	if isBareKey(k) {
		return k
	}
	return tomlString(k)
}

func tomlStrings(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = tomlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func tomlDuration(d time.Duration) string { return tomlString(config.Duration(d).String()) }

// ---------------------------------------------------------------------------
// Values

// seconds parses a PgBouncer time setting: seconds, possibly fractional.
func seconds(v string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f > float64(math.MaxInt64/int64(time.Second)) {
		return 0, fmt.Errorf("invalid time %q: want a number of seconds", v)
	}
	return time.Duration(math.Round(f*1e6)) * time.Microsecond, nil
}

// integer parses a PgBouncer integer (C strtol with base 0: 10, 0x1f, 017).
func integer(v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 0, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid integer %q", v)
	}
	return n, nil
}

// ---------------------------------------------------------------------------
// Conversion

// convertResult is the converted file and what it holds.
type convertResult struct {
	TOML        []byte
	Databases   int // [databases.NAME] sections written
	Unconverted int // settings listed as having no equivalent
}

// PgBouncer's defaults where they differ from pgrecycle's, so that the
// converted file behaves like PgBouncer did with the key unset.
const (
	pgbDefaultListenPort    = 6432
	pgbDefaultUnixSocketDir = "/tmp"
	pgbDefaultMaxClientConn = 100
	pgbDefaultAuthType      = "md5"
	pgbDefaultPoolMode      = "session"
	pgbDefaultPoolSize      = 20
	pgbDefaultServerLife    = time.Hour
	pgbDefaultAuthQuery     = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin"
)

// noEquivalent is why a PgBouncer setting has no pgrecycle counterpart.
// Settings that are converted are not listed here.
var noEquivalent = map[string]string{
	"logfile":                   "pgrecycle logs to stderr; let systemd (journalctl -u pgrecycle), Docker or Kubernetes collect the log. See docs/deploy.md.",
	"pidfile":                   "pgrecycle does not daemonize or write a pid file; run it under systemd or a container runtime, which track the process (deploy/pgrecycle.service).",
	"syslog":                    "pgrecycle logs to stderr; journald can forward it to syslog.",
	"syslog_ident":              "pgrecycle logs to stderr; journald can forward it to syslog.",
	"syslog_facility":           "pgrecycle logs to stderr; journald can forward it to syslog.",
	"log_connections":           "no per-event switches: log.level chooses what is logged, and connection counts are Prometheus metrics ([metrics] addr).",
	"log_disconnections":        "no per-event switches: log.level chooses what is logged, and connection counts are Prometheus metrics ([metrics] addr).",
	"log_pooler_errors":         "errors are always sent to the client as ErrorResponses and logged at warn level.",
	"log_stats":                 "statistics are Prometheus metrics ([metrics] addr) and SHOW commands on the admin console, not log lines.",
	"stats_period":              "statistics are Prometheus metrics ([metrics] addr), sampled at the scraper's interval.",
	"user":                      "pgrecycle never switches user itself: start it as an unprivileged user (systemd User= or DynamicUser=, a container's runAsUser).",
	"unix_socket_mode":          "the socket file is made world-connectable (0777); limit access with the permissions of listen.unix_socket_dir.",
	"unix_socket_group":         "the socket file is made world-connectable (0777); limit access with the group and permissions of listen.unix_socket_dir.",
	"server_round_robin":        "no switch for the order in which idle backends are handed out.",
	"track_extra_parameters":    "nothing to configure: pgrecycle tracks application_name, client_encoding, DateStyle, TimeZone, IntervalStyle and standard_conforming_strings, and also re-applies a client's other startup settings (search_path, statement_timeout, ...) on every backend it uses.",
	"ignore_startup_parameters": "nothing to ignore: pgrecycle accepts every startup parameter (extra_float_digits, search_path, options=-c name=value, ...) and applies it to the backends the client uses.",
	"peer_id":                   "no peering between processes: a cancel request is honoured by the pgrecycle process that issued the client's key. See docs/deploy.md about several processes on one port.",
	"disable_pqexec":            "simple-query messages are forwarded as they are; refuse multi-statement queries in the application or with PostgreSQL privileges.",
	"application_name_add_host": "the client's application_name is passed through unchanged.",
	"conffile":                  "informational only.",
	"service_name":              "Windows service name; not applicable.",
	"job_name":                  "Windows service name; not applicable.",
	"scram_iterations":          "SCRAM secrets that pgrecycle derives from plain-text passwords use 4096 iterations (PostgreSQL's default); stored SCRAM secrets keep their own count.",
	"auth_hba_file":             "no pg_hba.conf-format file: write its rules as [[hba]] sections (database, user, address, method) in this file.",
	"auth_ident_file":           "no ident maps: pgrecycle has no peer or ident authentication.",
	"auth_ldap_options":         "no LDAP authentication.",
	"auth_query":                "auth_user is not set, so PgBouncer did not use it.",
	"auth_dbname":               "pgrecycle runs auth.query on the database the client asks for: install the lookup function (or grant the query's access) in every database.",
	"stats_users":               "the admin console has no read-only role: add these users to auth.admin_users if they need SHOW commands, or point monitoring at [metrics] addr.",
	"autodb_idle_timeout":       "the pools of databases reached through [databases.\"*\"] close idle backends after pool.server_idle_timeout, like any other; the pools themselves stay.",
	"pool_idle_timeout":         "no pool expiry; idle backends are closed after pool.server_idle_timeout.",
	"dns_max_ttl":               "host names are resolved by the system resolver each time a backend is opened; there is no DNS cache to tune.",
	"dns_nxdomain_ttl":          "host names are resolved by the system resolver each time a backend is opened; there is no DNS cache to tune.",
	"dns_zone_check_period":     "host names are resolved by the system resolver each time a backend is opened; there is no DNS cache to tune.",
	"resolv_conf":               "the system resolver (/etc/resolv.conf) is used.",
	"query_wait_notify":         "no notice is sent while a client waits for a backend.",
	"login_notify_message":      "no welcome notice is sent.",
	"query_timeout":             "no proxy-side query timeout: set PostgreSQL's statement_timeout in [parameters] (e.g. statement_timeout = \"30s\"), which the server enforces.",
	"cancel_wait_timeout":       "cancel requests are forwarded at once on a connection of their own; they never queue.",
	"transaction_timeout":       "no proxy-side limit on open transactions; PostgreSQL 17 has transaction_timeout, which can be set in [parameters].",
	"suspend_timeout":           "no SUSPEND or -R online restart: for an upgrade, start the new version with listen.so_reuseport = true next to the old one, then stop the old one with SIGTERM (docs/deploy.md).",
	"server_fast_close":         "no equivalent switch.",
	"pkt_buf":                   "buffers are not tunable; large messages are streamed through fixed buffers.",
	"sbuf_loopcnt":              "buffers are not tunable; large messages are streamed through fixed buffers.",
	"max_packet_size":           "no limit on message size; large messages are streamed, never held in memory whole.",
	"listen_backlog":            "the operating system's default backlog (net.core.somaxconn on Linux) is used.",
	"tcp_defer_accept":          "not set.",
	"tcp_socket_buffer":         "the operating system's socket buffer sizes are used.",
	"client_tls_protocols":      "pgrecycle accepts TLS 1.2 and 1.3, with Go's default cipher suites and curves; not configurable.",
	"client_tls_ciphers":        "pgrecycle accepts TLS 1.2 and 1.3, with Go's default cipher suites and curves; not configurable.",
	"client_tls13_ciphers":      "pgrecycle accepts TLS 1.2 and 1.3, with Go's default cipher suites and curves; not configurable.",
	"client_tls_ecdhcurve":      "pgrecycle accepts TLS 1.2 and 1.3, with Go's default cipher suites and curves; not configurable.",
	"client_tls_dheparams":      "pgrecycle accepts TLS 1.2 and 1.3, with Go's default cipher suites and curves; not configurable.",
	"server_tls_key_file":       "no client certificate toward PostgreSQL: authenticate to the server with a password.",
	"server_tls_cert_file":      "no client certificate toward PostgreSQL: authenticate to the server with a password.",
	"server_tls_sslmode":        "applied to every database as sslmode; there was no database to apply it to.",
	"server_tls_ca_file":        "applied to every database as sslrootcert; there was no database to apply it to.",
	"client_tls_cert_file":      "client_tls_sslmode is not set, so PgBouncer offered no TLS; set [tls] mode, cert_file and key_file to offer it.",
	"client_tls_key_file":       "client_tls_sslmode is not set, so PgBouncer offered no TLS; set [tls] mode, cert_file and key_file to offer it.",
	"server_tls_protocols":      "TLS toward PostgreSQL uses Go's defaults (TLS 1.2 and later); not configurable.",
	"server_tls_ciphers":        "TLS toward PostgreSQL uses Go's defaults; not configurable.",
	"server_tls13_ciphers":      "TLS toward PostgreSQL uses Go's defaults; not configurable.",
}

// converter holds the state of one conversion.
type converter struct {
	src    string
	users  *userlistSummary
	g      map[string]iniEntry // [pgbouncer], the last value of each key
	gOrder []string
	used   map[string]bool
	errs   []error
	// The "no equivalent" list, in input order.
	unconverted []unconverted
	authType    string // the auth.type written
	// Values of the global sections that databases inherit.
	poolSize, minIdle int64
	socketDir         string
}

type unconverted struct {
	What, Reason string
}

func (c *converter) errorf(e iniEntry, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s: %s", e.Pos, e.Key, fmt.Sprintf(format, args...)))
}

func (c *converter) skip(what, reason string) {
	c.unconverted = append(c.unconverted, unconverted{what, reason})
}

// get returns a [pgbouncer] setting and marks it as handled.
func (c *converter) get(key string) (iniEntry, bool) {
	e, ok := c.g[key]
	if ok {
		c.used[key] = true
	}
	return e, ok
}

func (c *converter) durSetting(key string) (time.Duration, iniEntry, bool) {
	e, ok := c.get(key)
	if !ok {
		return 0, e, false
	}
	d, err := seconds(e.Value)
	if err != nil {
		c.errorf(e, "%v", err)
		return 0, e, false
	}
	return d, e, true
}

func (c *converter) intSetting(key string) (int64, iniEntry, bool) {
	e, ok := c.get(key)
	if !ok {
		return 0, e, false
	}
	n, err := integer(e.Value)
	if err != nil {
		c.errorf(e, "%v", err)
		return 0, e, false
	}
	return n, e, true
}

func (c *converter) boolSetting(key string) (bool, iniEntry, bool) {
	n, e, ok := c.intSetting(key)
	return n != 0, e, ok
}

// from describes where a value came from, for the trailing comment.
func from(e iniEntry) string {
	if e.Value == "" {
		return e.Key + " = (empty)"
	}
	return e.Key + " = " + e.Value
}

func fromSeconds(e iniEntry) string { return from(e) + " (seconds)" }

// convertPgBouncer converts the entries of a pgbouncer.ini. src names the
// file in the header; users, when not nil, is the checked userlist.
func convertPgBouncer(entries []iniEntry, src string, users *userlistSummary) (*convertResult, error) {
	c := &converter{src: src, users: users, g: map[string]iniEntry{}, used: map[string]bool{}}
	var dbs, userEntries, peers []iniEntry
	for _, e := range entries {
		switch e.Section {
		case "pgbouncer":
			if _, seen := c.g[e.Key]; !seen {
				c.gOrder = append(c.gOrder, e.Key)
			}
			c.g[e.Key] = e
		case "databases":
			dbs = append(dbs, e)
		case "users":
			userEntries = append(userEntries, e)
		case "peers":
			peers = append(peers, e)
		}
	}

	var sections []*tomlSection
	listen := c.listenSection()
	authSec := c.authSection()
	pool := c.poolSection()
	recycle := c.recycleSection()
	sections = append(sections, listen, authSec, pool, recycle)
	dbSections, ndb := c.databaseSections(dbs)
	sections = append(sections, dbSections...)
	sections = append(sections, c.limitsSection())
	for _, e := range userEntries {
		sections = append(sections, c.userEntry(e))
	}
	sections = append(sections, c.tlsSection(), c.metricsSection(), c.logSection())
	for _, e := range peers {
		c.skip("[peers] "+e.Key+" = "+e.Value, "no peering between processes: a cancel request is honoured by the pgrecycle process that issued the client's key. See docs/deploy.md about several processes on one port.")
	}
	// Everything in [pgbouncer] not handled above.
	for _, k := range c.gOrder {
		if c.used[k] {
			continue
		}
		e := c.g[k]
		reason, ok := noEquivalent[k]
		if !ok {
			reason = "not a setting this converter knows (a newer PgBouncer setting, or a typo: PgBouncer refuses unknown names)."
		}
		c.skip(from(e), reason)
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}

	var b bytes.Buffer
	c.header(&b)
	renderSections(&b, sections)
	if len(c.unconverted) > 0 {
		b.WriteString("\n# --- PgBouncer settings with no pgrecycle equivalent ---------------------\n")
		for _, u := range c.unconverted {
			b.WriteString("#\n# " + oneLine(u.What) + "\n")
			writeComment(&b, "  ", u.Reason)
		}
	}
	return &convertResult{TOML: b.Bytes(), Databases: ndb, Unconverted: len(c.unconverted)}, nil
}

func (c *converter) header(b *bytes.Buffer) {
	lines := []string{
		"pgrecycle configuration converted from the PgBouncer configuration " + c.src + " by `pgrecycle convert-pgbouncer`.",
		"Where PgBouncer's default differs from pgrecycle's, the PgBouncer value is written out, so an unset setting behaves as before. PgBouncer's times in seconds (tcp_user_timeout: milliseconds) are written as Go durations (\"90s\", \"1h\").",
		"Lines marked NOTE need a decision. Settings without an equivalent are listed at the end with the reason. pgrecycle.example.toml lists every key with its default; `pgrecycle -config FILE` refuses mistakes at start.",
	}
	for i, l := range lines {
		if i > 0 {
			b.WriteString("#\n")
		}
		writeComment(b, "", l)
	}
	if u := c.users; u != nil {
		b.WriteString("#\n")
		writeComment(b, "", fmt.Sprintf("Userlist %s checked: %d users; %d with a plain-text password, %d with an md5 hash, %d with a SCRAM secret, %d without a password.",
			u.Path, u.Users, u.Plain, u.MD5, u.SCRAM, u.NoPassword))
		if u.NoPassword > 0 && c.authType != "trust" {
			writeComment(b, "", "NOTE: users without a password cannot log in under "+c.authType+".")
		}
		if u.MD5 > 0 && c.authType == "scram-sha-256" {
			writeComment(b, "", "NOTE: under scram-sha-256, PgBouncer refused users listed with an md5 hash; pgrecycle lets them log in with md5. Replace those hashes with SCRAM secrets to keep SCRAM for everyone.")
		}
	}
}

// listenSection: listen_addr, listen_port, unix_socket_dir, max_client_conn,
// client_login_timeout, so_reuseport, tcp_*.
func (c *converter) listenSection() *tomlSection {
	s := &tomlSection{Header: "listen"}
	port := int64(pgbDefaultListenPort)
	portNote := ""
	if n, e, ok := c.intSetting("listen_port"); ok {
		if n < 1 || n > 65535 {
			c.errorf(e, "port %d out of range", n)
		}
		port, portNote = n, from(e)
	}
	addrEntry, hasAddr := c.get("listen_addr")
	addr := ""
	if hasAddr && addrEntry.Value != "" {
		var hosts []string
		for _, h := range strings.Split(addrEntry.Value, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hosts = append(hosts, h)
			}
		}
		note := from(addrEntry)
		if portNote != "" {
			note += "; " + portNote
		}
		switch {
		case slices.Contains(hosts, "*"):
			addr = net.JoinHostPort("", strconv.FormatInt(port, 10))
			note += " (every address, IPv4 and IPv6)"
		case len(hosts) > 0:
			addr = net.JoinHostPort(hosts[0], strconv.FormatInt(port, 10))
			if len(hosts) > 1 {
				s.comment("NOTE: PgBouncer listened on " + strings.Join(hosts, ", ") + "; pgrecycle listens on one address: the first is kept. Use \":" + strconv.FormatInt(port, 10) + "\" for every address, with firewall rules.")
			}
		}
		s.set("addr", tomlString(addr), note)
	} else {
		s.set("addr", `""`, "listen_addr not set: PgBouncer accepted no TCP connections, only the Unix socket")
	}

	dirEntry, hasDir := c.get("unix_socket_dir")
	c.socketDir = pgbDefaultUnixSocketDir
	switch {
	case hasDir && dirEntry.Value != "":
		c.socketDir = dirEntry.Value
		s.set("unix_socket_dir", tomlString(dirEntry.Value), from(dirEntry))
	case hasDir:
		// Set empty: PgBouncer had no Unix socket either.
		c.socketDir = ""
		if addr == "" {
			c.errorf(dirEntry, "PgBouncer would have no listener at all: neither listen_addr nor unix_socket_dir is set")
		}
	case addr == "":
		s.set("unix_socket_dir", tomlString(pgbDefaultUnixSocketDir), "PgBouncer's default unix_socket_dir")
	default:
		s.comment("PgBouncer's default also listened on the Unix socket " + pgbDefaultUnixSocketDir + "/.s.PGSQL." + strconv.FormatInt(port, 10) + "; uncomment if clients use it:")
		s.comment(`unix_socket_dir = "` + pgbDefaultUnixSocketDir + `"`)
	}
	if addr == "" && port != config.DefaultPort {
		p := strconv.FormatInt(port, 10)
		s.comment("NOTE: PgBouncer's socket was .s.PGSQL." + p + " (" + portNote + "). Without a TCP address pgrecycle names it .s.PGSQL.6432: clients must use -p 6432, or set addr (e.g. \"127.0.0.1:" + p + "\"), whose port names the socket.")
	}
	if n, e, ok := c.intSetting("max_client_conn"); ok {
		if n < 1 {
			c.errorf(e, "must be at least 1")
		}
		s.set("max_client_conn", strconv.FormatInt(n, 10), from(e))
	} else {
		s.set("max_client_conn", strconv.Itoa(pgbDefaultMaxClientConn), "PgBouncer's default max_client_conn (pgrecycle's is 10000)")
	}
	if d, e, ok := c.durSetting("client_login_timeout"); ok {
		s.set("client_login_timeout", tomlDuration(d), fromSeconds(e))
	}
	if v, e, ok := c.boolSetting("so_reuseport"); ok {
		s.set("so_reuseport", strconv.FormatBool(v), from(e))
	}
	if v, e, ok := c.boolSetting("tcp_keepalive"); ok {
		s.set("tcp_keepalive", strconv.FormatBool(v), from(e))
	}
	for _, k := range []string{"tcp_keepidle", "tcp_keepintvl"} {
		if n, e, ok := c.intSetting(k); ok {
			if n < 0 {
				c.errorf(e, "must not be negative")
			}
			s.set(k, tomlDuration(time.Duration(n)*time.Second), fromSeconds(e))
		}
	}
	if n, e, ok := c.intSetting("tcp_keepcnt"); ok {
		if n < 0 {
			c.errorf(e, "must not be negative")
		}
		s.set("tcp_keepcnt", strconv.FormatInt(n, 10), from(e))
	}
	if n, e, ok := c.intSetting("tcp_user_timeout"); ok {
		if n < 0 {
			c.errorf(e, "must not be negative")
		}
		s.set("tcp_user_timeout", tomlDuration(time.Duration(n)*time.Millisecond), e.Key+" = "+e.Value+" (milliseconds)")
	}
	return s
}

// authSection: auth_type, auth_file, admin_users.
func (c *converter) authSection() *tomlSection {
	s := &tomlSection{Header: "auth"}
	typ, note := pgbDefaultAuthType, "PgBouncer's default auth_type (pgrecycle's is scram-sha-256)"
	if e, ok := c.get("auth_type"); ok {
		note = from(e)
		switch v := strings.ToLower(e.Value); v {
		case "md5", "scram-sha-256", "plain":
			typ = v
		case "trust":
			typ = "trust"
			s.comment("NOTE: PgBouncer's trust still required the user to be listed in auth_file; pgrecycle's trust lets any user name in. Restrict it with [[hba]] rules or the network.")
		case "any":
			typ = "trust"
			s.comment("NOTE: auth_type = any: the nearest is trust, which lets any user name in without a password (PgBouncer also ignored the name; its databases must use a forced user).")
		case "hba":
			typ = "md5"
			hba := "auth_hba_file"
			if he, ok := c.g["auth_hba_file"]; ok {
				hba = he.Value
			}
			s.comment("NOTE: auth_type = hba: the rules of " + hba + " are not converted: write them as [[hba]] rules (database, user, address, method; see pgrecycle.example.toml). Until then md5 applies to every client (SCRAM for users with a SCRAM secret).")
		case "cert":
			typ = "cert"
			if _, ok := c.get("client_tls_ca_file"); !ok {
				s.comment("NOTE: auth_type = cert needs [tls] client_ca_file (PgBouncer's client_tls_ca_file), which is not set.")
			}
		case "pam", "ldap":
			typ = "scram-sha-256"
			s.comment("NOTE: auth_type = " + v + " has no equivalent: clients must now log in with a password checked against auth.file.")
		default:
			c.errorf(e, "unknown auth_type %q", e.Value)
		}
	}
	s.set("type", tomlString(typ), note)
	c.authType = typ

	if e, ok := c.get("auth_file"); ok && e.Value != "" {
		s.set("file", tomlString(e.Value), from(e))
		if !filepath.IsAbs(e.Value) {
			s.comment("NOTE: a relative auth.file is taken relative to this file's directory (PgBouncer used its working directory).")
		}
		if c.users != nil && c.users.Path != e.Value {
			s.comment("The userlist checked by the converter was " + c.users.Path + ".")
		}
	} else if typ != "trust" {
		file, why := "userlist.txt", "NOTE: pgbouncer.ini has no auth_file"
		if c.users != nil {
			file = c.users.Path
			why += "; the userlist given to the converter is used"
		}
		if _, aq := c.g["auth_user"]; aq {
			why += ". Users come from auth.query, but pgrecycle still needs this file: it must hold at least the plain-text password of query_user (or set it in [users.NAME] password)"
		}
		s.comment(why + ".")
		s.set("file", tomlString(file), "PgBouncer format: \"user\" \"password, md5 hash or SCRAM secret\"")
	}

	if e, ok := c.get("auth_user"); ok && e.Value != "" {
		q, note := pgbDefaultAuthQuery, "PgBouncer's default auth_query"
		if qe, ok := c.get("auth_query"); ok && qe.Value != "" {
			q, note = qe.Value, "auth_query"
		}
		s.set("query", tomlString(q), note+"; run on the client's database")
		s.set("query_user", tomlString(e.Value), from(e)+"; its password from [users.NAME] password or auth.file, as in PgBouncer")
	}
	if e, ok := c.get("admin_users"); ok {
		var list []string
		for _, u := range strings.Split(e.Value, ",") {
			if u = strings.TrimSpace(u); u != "" {
				list = append(list, u)
			}
		}
		s.set("admin_users", tomlStrings(list), from(e)+"; the console is the database pgrecycle (psql -d pgrecycle)")
	}
	return s
}

// poolModeOf maps a PgBouncer pool_mode; ok is false for statement mode.
func poolModeOf(v string) (mode string, ok bool, known bool) {
	switch strings.ToLower(v) {
	case "session":
		return "session", true, true
	case "transaction":
		return "transaction", true, true
	case "statement":
		return "transaction", false, true
	}
	return "", false, false
}

const statementModeNote = "NOTE: pool_mode = statement is not supported: transaction pooling is used, which is the nearest (a backend is released at the end of each transaction, and multi-statement transactions keep working)."

// poolSection: the [pool] defaults.
func (c *converter) poolSection() *tomlSection {
	s := &tomlSection{Header: "pool"}
	if e, ok := c.get("pool_mode"); ok {
		mode, supported, known := poolModeOf(e.Value)
		if !known {
			c.errorf(e, "unknown pool_mode %q", e.Value)
		}
		if !supported {
			s.comment(statementModeNote)
		}
		s.set("mode", tomlString(mode), from(e))
	} else {
		s.set("mode", tomlString(pgbDefaultPoolMode), "PgBouncer's default pool_mode (pgrecycle's is transaction)")
	}
	c.poolSize = pgbDefaultPoolSize
	if n, e, ok := c.intSetting("default_pool_size"); ok {
		if n < 1 {
			s.comment("NOTE: default_pool_size = " + e.Value + " would open no backend; pgrecycle's pool.size is at least 1.")
			n = 1
		}
		c.poolSize = n
		s.set("size", strconv.FormatInt(n, 10), from(e))
	}
	if n, e, ok := c.intSetting("min_pool_size"); ok {
		if n < 0 {
			c.errorf(e, "must not be negative")
		}
		if n > c.poolSize {
			s.comment(fmt.Sprintf("NOTE: min_pool_size = %d is larger than the pool size; pgrecycle keeps min_idle at most size.", n))
			n = c.poolSize
		}
		c.minIdle = n
		s.set("min_idle", strconv.FormatInt(n, 10), from(e)+"; pgrecycle keeps them open in every (database, user) pool")
	}
	if n, e, ok := c.intSetting("max_db_connections"); ok {
		if n < 0 {
			c.errorf(e, "must not be negative")
		}
		s.set("max_db_connections", strconv.FormatInt(n, 10), from(e))
	}
	if n, e, ok := c.intSetting("max_db_client_connections"); ok {
		if n < 0 {
			c.errorf(e, "must not be negative")
		}
		s.set("max_db_client_connections", strconv.FormatInt(n, 10), from(e))
	}
	if n, e, ok := c.intSetting("reserve_pool_size"); ok {
		if n < 0 {
			c.errorf(e, "must not be negative")
		}
		s.set("reserve_pool_size", strconv.FormatInt(n, 10), from(e))
	}
	if d, e, ok := c.durSetting("reserve_pool_timeout"); ok {
		s.set("reserve_pool_timeout", tomlDuration(d), fromSeconds(e))
	}
	if d, e, ok := c.durSetting("query_wait_timeout"); ok {
		s.set("query_wait_timeout", tomlDuration(d), fromSeconds(e))
	}
	if e, ok := c.get("server_reset_query"); ok {
		s.set("server_reset_query", tomlString(e.Value), from(e))
	}
	if v, e, ok := c.boolSetting("server_reset_query_always"); ok {
		s.set("server_reset_query_always", strconv.FormatBool(v), from(e))
	}
	if d, e, ok := c.durSetting("server_connect_timeout"); ok {
		if d <= 0 {
			s.comment("NOTE: server_connect_timeout = 0: pgrecycle needs a limit, so that an unreachable host cannot hang a pool; the default is kept.")
			d = 15 * time.Second
		}
		s.set("server_connect_timeout", tomlDuration(d), fromSeconds(e))
	}
	if d, e, ok := c.durSetting("server_login_retry"); ok {
		if d <= 0 {
			s.comment("NOTE: server_login_retry = 0 would reconnect in a tight loop; pgrecycle needs a positive value.")
			d = time.Second
		}
		s.set("server_login_retry", tomlDuration(d), fromSeconds(e)+"; pgrecycle backs off up to this after failed connects")
	}
	if d, e, ok := c.durSetting("server_idle_timeout"); ok {
		s.set("server_idle_timeout", tomlDuration(d), fromSeconds(e))
	}
	if e, ok := c.get("server_check_query"); ok {
		if e.Value == "<empty>" {
			s.set("server_check_query", tomlString("SELECT 1"), from(e)+" (an empty query); pgrecycle sends a real one")
		} else {
			s.set("server_check_query", tomlString(e.Value), from(e))
		}
	}
	if d, e, ok := c.durSetting("server_check_delay"); ok {
		s.set("server_check_delay", tomlDuration(d), fromSeconds(e))
	}
	if d, e, ok := c.durSetting("client_idle_timeout"); ok {
		s.set("client_idle_timeout", tomlDuration(d), fromSeconds(e))
	}
	if d, e, ok := c.durSetting("idle_transaction_timeout"); ok {
		s.set("idle_transaction_timeout", tomlDuration(d), fromSeconds(e))
	}
	if n, e, ok := c.intSetting("max_prepared_statements"); ok {
		if n < 0 {
			c.errorf(e, "must not be negative")
		}
		s.set("max_prepared_statements", strconv.FormatInt(n, 10), from(e)+"; protocol-level statements, tracked per backend")
	}
	return s
}

// recycleSection: server_lifetime, plus what PgBouncer cannot do.
func (c *converter) recycleSection() *tomlSection {
	s := &tomlSection{Header: "recycle"}
	d, e, ok := c.durSetting("server_lifetime")
	switch {
	case ok && d == 0:
		s.comment("server_lifetime = 0: PgBouncer used each server connection once. The nearest: retire a backend after one transaction, and let every backend retire at once.")
		s.set("max_lifetime", tomlString("0s"), "off: max_transactions retires them")
		s.set("max_transactions", "1", from(e))
		s.set("max_retiring_share", "1.0", "no cap on backends retiring at the same time")
	case ok:
		s.set("max_lifetime", tomlDuration(d), fromSeconds(e))
	default:
		s.set("max_lifetime", tomlDuration(pgbDefaultServerLife), "PgBouncer's default server_lifetime (3600 seconds)")
	}
	s.set("lifetime_jitter", "0.1", "each backend lives max_lifetime × (1 ± 0.1), so a pool never reconnects all at once")
	s.comment("PgBouncer retires backends by age only. pgrecycle can also retire them by work done and by observed memory (see pgrecycle.example.toml), for example:")
	s.comment(`max_queries = 10000`)
	s.comment(`max_memory = "64MB"`)
	return s
}

// dbOut is one converted [databases] entry.
type dbOut struct {
	main, params, pool, recycle *tomlSection
}

// databaseSections converts [databases]. It returns the sections and how
// many databases were written.
func (c *converter) databaseSections(entries []iniEntry) ([]*tomlSection, int) {
	// The last definition of a name wins, at the place of its first.
	var order []string
	last := map[string]iniEntry{}
	for _, e := range entries {
		if _, seen := last[e.Key]; !seen {
			order = append(order, e.Key)
		}
		last[e.Key] = e
	}
	var out []*tomlSection
	n := 0
	for _, name := range order {
		e := last[name]
		params, err := parseConnString(e.Value)
		if err != nil {
			c.errorf(e, "%v", err)
			continue
		}
		switch {
		case name == config.FallbackDatabase:
			// Any database name not listed, routed with these settings.
			d := c.database(name, e, params)
			out = append(out, d.main, d.params, d.pool, d.recycle)
			n++
		case name == config.AdminDatabase:
			c.skip("[databases] "+name+" = ...", "the name \"pgrecycle\" is the admin console in pgrecycle; rename this database and tell its clients.")
		default:
			d := c.database(name, e, params)
			out = append(out, d.main, d.params, d.pool, d.recycle)
			n++
		}
	}
	return out, n
}

// database converts one [databases] entry.
func (c *converter) database(name string, e iniEntry, params []connParam) dbOut {
	key := tomlKey(name)
	d := dbOut{
		main:    &tomlSection{Header: "databases." + key},
		params:  &tomlSection{Header: "databases." + key + ".parameters"},
		pool:    &tomlSection{Header: "databases." + key + ".pool"},
		recycle: &tomlSection{Header: "databases." + key + ".recycle"},
	}
	label := "[databases] " + e.Key
	var host, port, dbname, user, password string
	var size, minIdle int64 = -1, -1
	var sizeNote, minNote string
	var paramNames []string
	paramVals := map[string]connParam{}
	setParam := func(name, value, note string) {
		name = strings.ToLower(name)
		if _, ok := paramVals[name]; !ok {
			paramNames = append(paramNames, name)
		}
		paramVals[name] = connParam{value, note}
	}
	atoi := func(p connParam) (int64, bool) {
		n, err := integer(p.Value)
		if err != nil {
			c.errorf(e, "%s: %v", p.Key, err)
			return 0, false
		}
		return n, true
	}
	for _, p := range params {
		switch p.Key {
		case "host":
			host = p.Value
		case "port":
			port = p.Value
		case "dbname":
			dbname = p.Value
		case "user":
			user = p.Value
		case "password":
			password = p.Value
		case "client_encoding", "datestyle", "timezone", "application_name":
			setParam(p.Key, p.Value, p.Key+"="+p.Value)
		case "pool_size":
			if n, ok := atoi(p); ok {
				size, sizeNote = n, p.Key+"="+p.Value
			}
		case "min_pool_size":
			if n, ok := atoi(p); ok {
				minIdle, minNote = n, p.Key+"="+p.Value
			}
		case "max_db_connections":
			if n, ok := atoi(p); ok {
				if n < 0 {
					c.errorf(e, "%s: must not be negative", p.Key)
				}
				d.pool.set("max_db_connections", strconv.FormatInt(n, 10), p.Key+"="+p.Value)
			}
		case "query_wait_timeout":
			if n, ok := atoi(p); ok && n >= 0 { // -1: not set
				d.pool.set("query_wait_timeout", tomlDuration(time.Duration(n)*time.Second), p.Key+"="+p.Value+" (seconds)")
			}
		case "server_lifetime":
			if n, ok := atoi(p); ok && n > 0 { // 0: not set, the global value applies
				d.recycle.set("max_lifetime", tomlDuration(time.Duration(n)*time.Second), p.Key+"="+p.Value+" (seconds)")
			}
		case "pool_mode":
			mode, supported, known := poolModeOf(p.Value)
			if !known {
				c.errorf(e, "unknown pool_mode %q", p.Value)
				continue
			}
			if !supported {
				d.pool.comment(statementModeNote)
			}
			d.pool.set("mode", tomlString(mode), p.Key+"="+p.Value)
		case "connect_query":
			set, reason := connectQueryParameters(p.Value)
			if reason != "" {
				d.main.comment("NOTE: connect_query is not converted: " + reason + ". pgrecycle runs no query when it connects; it can only send settings in the startup message ([databases." + key + ".parameters]).")
				c.skip(label+": connect_query="+p.Value, reason+"; only SET statements can become startup parameters.")
				continue
			}
			for _, kv := range set {
				setParam(kv.Key, kv.Value, "connect_query")
			}
		case "reserve_pool", "reserve_pool_size":
			if n, ok := atoi(p); ok {
				if n < 0 {
					c.errorf(e, "%s: must not be negative", p.Key)
				}
				d.pool.set("reserve_pool_size", strconv.FormatInt(n, 10), p.Key+"="+p.Value)
			}
		case "max_db_client_connections":
			if n, ok := atoi(p); ok {
				if n < 0 {
					c.errorf(e, "%s: must not be negative", p.Key)
				}
				d.pool.set("max_db_client_connections", strconv.FormatInt(n, 10), p.Key+"="+p.Value)
			}
		case "auth_user", "auth_query":
			global := c.g[p.Key].Value
			if p.Key == "auth_query" && global == "" {
				global = pgbDefaultAuthQuery
			}
			if p.Value != global {
				c.skip(label+": "+p.Key+"="+p.Value, "auth.query and auth.query_user are set once for every database; the global values apply here.")
			}
		case "auth_dbname":
			c.skip(label+": "+p.Key+"="+p.Value, noEquivalent[p.Key])
		case "load_balance_hosts":
			c.skip(label+": "+p.Key+"="+p.Value, "pgrecycle connects to one host per database.")
		default:
			c.errorf(e, "unknown connection parameter %q", p.Key)
		}
	}

	// host: PgBouncer's default is its own Unix socket directory.
	switch {
	case host == "":
		dir := c.socketDir
		if dir == "" {
			dir = pgbDefaultUnixSocketDir
		}
		d.main.set("host", tomlString(dir), "no host: PgBouncer used the Unix socket in its unix_socket_dir")
	case strings.Contains(host, ","):
		hosts := strings.Split(host, ",")
		d.main.comment("NOTE: PgBouncer spread connections over " + host + "; pgrecycle connects to one host per database: the first is kept. Put a load balancer or a DNS name in front of the others.")
		d.main.set("host", tomlString(strings.TrimSpace(hosts[0])), "")
		c.skip(label+": host="+host, "one host per database; only the first is used.")
	case strings.HasPrefix(host, "@"):
		d.main.comment("NOTE: " + host + " is a Linux abstract socket, which pgrecycle cannot connect to: give a directory or a host name.")
		d.main.set("host", tomlString(host), "")
	default:
		d.main.set("host", tomlString(host), "")
	}
	if port != "" {
		if n, err := integer(port); err != nil || n < 1 || n > 65535 {
			c.errorf(e, "invalid port %q", port)
		} else if n != config.DefaultDatabasePort {
			d.main.set("port", strconv.FormatInt(n, 10), "")
		}
	}
	if dbname != "" && dbname != name {
		d.main.set("dbname", tomlString(dbname), "")
	}
	if user != "" {
		d.main.set("user", tomlString(user), "every client shares this user's pool, as in PgBouncer")
		if password != "" {
			d.main.set("password", tomlString(password), "")
		} else {
			d.main.comment("NOTE: no password: PgBouncer took " + user + "'s from auth_file. Give it here in plain text (password = \"...\"), unless PostgreSQL lets pgrecycle in without one.")
		}
	} else if password != "" {
		d.main.set("password", tomlString(password), "")
	}
	if e, ok := c.g["server_tls_sslmode"]; ok {
		c.used["server_tls_sslmode"] = true
		mode := strings.ToLower(e.Value)
		if !slices.Contains([]string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}, mode) {
			c.errorf(e, "unknown sslmode %q", e.Value)
		} else {
			d.main.set("sslmode", tomlString(mode), from(e))
		}
	}
	if e, ok := c.g["server_tls_ca_file"]; ok && e.Value != "" {
		c.used["server_tls_ca_file"] = true
		d.main.set("sslrootcert", tomlString(e.Value), from(e))
	}

	for _, n := range paramNames {
		v := paramVals[n]
		d.params.set(n, tomlString(v.Key), v.Value)
	}

	effSize := c.poolSize
	if size >= 0 {
		if size < 1 {
			d.pool.comment("NOTE: pool_size=" + strconv.FormatInt(size, 10) + " would open no backend; pgrecycle's pool.size is at least 1.")
			size = 1
		}
		effSize = size
		d.pool.set("size", strconv.FormatInt(size, 10), sizeNote)
	}
	switch {
	case minIdle > effSize:
		d.pool.comment(fmt.Sprintf("NOTE: min_pool_size = %d is larger than the pool size; pgrecycle keeps min_idle at most size.", minIdle))
		d.pool.set("min_idle", strconv.FormatInt(effSize, 10), minNote)
	case minIdle >= 0:
		d.pool.set("min_idle", strconv.FormatInt(minIdle, 10), minNote)
	case c.minIdle > effSize:
		d.pool.set("min_idle", strconv.FormatInt(effSize, 10), "the global min_pool_size is larger than this pool")
	}
	return d
}

// connectQueryParameters turns a connect_query made only of SET statements
// into startup parameters. reason says why it cannot, otherwise.
func connectQueryParameters(q string) ([]connParam, string) {
	stmts, err := splitStatements(q)
	if err != nil {
		return nil, err.Error()
	}
	var out []connParam
	for _, st := range stmts {
		name, value, reason := parseSetStatement(st)
		if reason != "" {
			return nil, fmt.Sprintf("%q %s", st, reason)
		}
		if name != "" {
			out = append(out, connParam{name, value})
		}
	}
	if len(out) == 0 {
		return nil, "it sets nothing"
	}
	return out, ""
}

// splitStatements splits SQL on semicolons outside quotes. Dollar quotes
// and comments are refused: a connect_query that needs them is not a
// list of plain SETs.
func splitStatements(q string) ([]string, error) {
	var out []string
	start := 0
	for i := 0; i < len(q); i++ {
		switch q[i] {
		case '\'', '"':
			quote, j := q[i], i+1
			for {
				if j >= len(q) {
					return nil, fmt.Errorf("unterminated quote")
				}
				if q[j] == quote {
					if j+1 < len(q) && q[j+1] == quote {
						j += 2
						continue
					}
					break
				}
				j++
			}
			i = j
		case '$':
			return nil, fmt.Errorf("it uses dollar quoting or parameters")
		case '-':
			if i+1 < len(q) && q[i+1] == '-' {
				return nil, fmt.Errorf("it holds a comment")
			}
		case '/':
			if i+1 < len(q) && q[i+1] == '*' {
				return nil, fmt.Errorf("it holds a comment")
			}
		case ';':
			if s := strings.TrimSpace(q[start:i]); s != "" {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if s := strings.TrimSpace(q[start:]); s != "" {
		out = append(out, s)
	}
	return out, nil
}

// sqlToken is a token of a SET statement.
type sqlToken struct {
	text string // identifier (case-folded unless quoted), literal content, number, or punctuation
	kind byte   // 'i' identifier, 'q' quoted identifier, 's' string literal, 'n' number, 'p' punctuation
}

func tokenizeSQL(s string) ([]sqlToken, error) {
	var out []sqlToken
	for i := 0; i < len(s); {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			i++
		case ch == '\'' || ch == '"':
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, fmt.Errorf("unterminated quote")
				}
				if s[j] == ch {
					if j+1 < len(s) && s[j+1] == ch {
						b.WriteByte(ch)
						j += 2
						continue
					}
					break
				}
				b.WriteByte(s[j])
				j++
			}
			kind := byte('s')
			if ch == '"' {
				kind = 'q'
			}
			out = append(out, sqlToken{b.String(), kind})
			i = j + 1
		case ch == '=' || ch == ',':
			out = append(out, sqlToken{string(ch), 'p'})
			i++
		case ch >= '0' && ch <= '9' || ch == '.' || ch == '-' || ch == '+':
			j := i + 1
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E') {
				j++
			}
			if _, err := strconv.ParseFloat(s[i:j], 64); err != nil {
				return nil, fmt.Errorf("unexpected %q", s[i:j])
			}
			out = append(out, sqlToken{s[i:j], 'n'})
			i = j
		case ch == '_' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= 0x80:
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] == '$' || s[j] == '.' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9' || s[j] >= 0x80) {
				j++
			}
			// A string with a prefix (E'...', U&'...', B'...') is not a plain literal.
			if j < len(s) && (s[j] == '\'' || s[j] == '&') {
				return nil, fmt.Errorf("it uses a prefixed string literal")
			}
			out = append(out, sqlToken{strings.ToLower(s[i:j]), 'i'})
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q", string(ch))
		}
	}
	return out, nil
}

// parseSetStatement reads `SET [SESSION] name {=|TO} value[, value...]`
// (and SET TIME ZONE, SET SCHEMA, SET NAMES). name "" with reason ""
// means a statement that sets nothing to send (SET x TO DEFAULT).
func parseSetStatement(st string) (name, value, reason string) {
	if f := strings.Fields(st); len(f) == 0 || !strings.EqualFold(f[0], "set") {
		return "", "", "is not a SET statement"
	}
	toks, err := tokenizeSQL(st)
	if err != nil {
		return "", "", "cannot be read: " + err.Error()
	}
	isWord := func(i int, w string) bool { return i < len(toks) && toks[i].kind == 'i' && toks[i].text == w }
	if !isWord(0, "set") {
		return "", "", "is not a SET statement"
	}
	i := 1
	switch {
	case isWord(i, "local"):
		return "", "", "lasts one transaction only (SET LOCAL)"
	case isWord(i, "session") && (isWord(i+1, "authorization") || isWord(i+1, "characteristics")):
		return "", "", "changes the session's role or transaction defaults; use databases.NAME.user, or default_transaction_* settings"
	case isWord(i, "session"):
		i++
	}
	switch {
	case isWord(i, "role"):
		return "", "", "changes the role: connect as that user instead (databases.NAME.user)"
	case isWord(i, "transaction"), isWord(i, "constraints"):
		return "", "", "applies to one transaction only"
	case isWord(i, "time") && isWord(i+1, "zone"):
		name, i = "timezone", i+2
		if isWord(i, "local") || isWord(i, "default") {
			return "", "", ""
		}
		if isWord(i, "interval") {
			return "", "", "uses an INTERVAL time zone"
		}
	case isWord(i, "schema"):
		name, i = "search_path", i+1
	case isWord(i, "names"):
		name, i = "client_encoding", i+1
	case i < len(toks) && (toks[i].kind == 'i' || toks[i].kind == 'q'):
		name = strings.ToLower(toks[i].text)
		i++
		if i < len(toks) && (toks[i].text == "=" && toks[i].kind == 'p' || isWord(i, "to")) {
			i++
		} else {
			return "", "", "is not of the form SET name = value"
		}
	default:
		return "", "", "is not of the form SET name = value"
	}
	if !validSetting(name) {
		return "", "", "sets a name pgrecycle cannot send as a startup parameter"
	}
	if isWord(i, "default") && i+1 == len(toks) {
		return "", "", "" // the server default: nothing to send
	}
	// A list of values separated by commas.
	var items []sqlToken
	for {
		if i >= len(toks) || toks[i].kind == 'p' {
			return "", "", "has a value pgrecycle cannot read"
		}
		items = append(items, toks[i])
		i++
		if i == len(toks) {
			break
		}
		if toks[i].text != "," || toks[i].kind != 'p' {
			return "", "", "has a value pgrecycle cannot read"
		}
		i++
	}
	if len(items) == 1 {
		return name, items[0].text, ""
	}
	parts := make([]string, len(items))
	for k, it := range items {
		parts[k] = listItem(it)
	}
	return name, strings.Join(parts, ", "), ""
}

// listItem writes one element of a list setting (search_path) as
// PostgreSQL reads lists from a startup parameter: identifiers that would
// change when case-folded, or hold special characters, are double-quoted.
func listItem(t sqlToken) string {
	if t.kind == 'n' {
		return t.text
	}
	plain := t.text != "" && !(t.text[0] >= '0' && t.text[0] <= '9')
	for _, r := range t.text {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			plain = false
		}
	}
	if plain {
		return t.text
	}
	return `"` + strings.ReplaceAll(t.text, `"`, `""`) + `"`
}

// validSetting reports a setting name pgrecycle accepts in [parameters].
func validSetting(s string) bool {
	switch s {
	case "user", "database", "replication":
		return false
	}
	return config.ValidParameterName(s)
}

// limitsSection: max_user_connections, max_user_client_connections.
func (c *converter) limitsSection() *tomlSection {
	s := &tomlSection{Header: "limits"}
	for _, key := range []string{"max_user_connections", "max_user_client_connections"} {
		if n, e, ok := c.intSetting(key); ok {
			if n < 0 {
				c.errorf(e, "must not be negative")
			}
			s.set(key, strconv.FormatInt(n, 10), from(e))
		}
	}
	return s
}

// userEntry converts a [users] entry: its limits become [users.NAME];
// pgrecycle has no per-user pool settings.
func (c *converter) userEntry(e iniEntry) *tomlSection {
	s := &tomlSection{Header: "users." + tomlKey(e.Key)}
	params, err := parseConnString(e.Value)
	if err != nil {
		c.errorf(e, "%v", err)
		return s
	}
	for _, p := range params {
		reason := "no per-user pool settings: [users.NAME] holds a password, parameters and the user's limits. "
		switch p.Key {
		case "max_user_connections", "max_user_client_connections":
			n, err := integer(p.Value)
			switch {
			case err != nil:
				c.errorf(e, "%s: %v", p.Key, err)
			case n < 0:
				c.errorf(e, "%s: must not be negative", p.Key)
			default:
				s.set(p.Key, strconv.FormatInt(n, 10), p.Key+"="+p.Value)
			}
			continue
		case "pool_mode":
			reason += "Give this user's clients a database of their own (another [databases.NAME] section with the same host) whose pool.mode is what they need."
		case "pool_size", "reserve_pool_size":
			reason += "pool.size applies to each (database, user) pool; set it per database, and max_user_connections here to cap the user's backends."
		case "query_timeout", "transaction_timeout":
			reason += "Use PostgreSQL's statement_timeout / transaction_timeout in [users." + tomlKey(e.Key) + ".parameters]."
		case "idle_transaction_timeout", "client_idle_timeout", "query_wait_timeout":
			reason += "Set pool." + p.Key + " globally or per database."
		default:
			reason = "not a [users] setting this converter knows."
		}
		c.skip("[users] "+e.Key+": "+p.Key+"="+p.Value, reason)
	}
	return s
}

// tlsSection: client_tls_*.
func (c *converter) tlsSection() *tomlSection {
	s := &tomlSection{Header: "tls"}
	e, ok := c.get("client_tls_sslmode")
	if !ok {
		return s // the cert and key files, if set, are listed as unused
	}
	certE, hasCert := c.get("client_tls_cert_file")
	keyE, hasKey := c.get("client_tls_key_file")
	mode := ""
	switch v := strings.ToLower(e.Value); v {
	case "disable":
		mode = "disable"
	case "allow", "prefer":
		mode = "allow"
	case "require":
		mode = "require"
	case "verify-ca", "verify-full":
		mode = "require"
	default:
		c.errorf(e, "unknown sslmode %q", e.Value)
		return s
	}
	if mode != "disable" && (!hasCert || certE.Value == "" || !hasKey || keyE.Value == "") {
		s.comment("NOTE: client_tls_sslmode = " + e.Value + " without client_tls_cert_file and client_tls_key_file: PgBouncer would not start; TLS stays off until both are set.")
		mode = "disable"
	}
	s.set("mode", tomlString(mode), from(e))
	if hasCert && certE.Value != "" {
		s.set("cert_file", tomlString(certE.Value), from(certE))
	}
	if hasKey && keyE.Value != "" {
		s.set("key_file", tomlString(keyE.Value), from(keyE))
	}
	// Client certificates: verified when given with a CA file, required
	// by the verify modes, as in PgBouncer.
	if caE, ok := c.get("client_tls_ca_file"); ok && caE.Value != "" && mode != "disable" {
		clientCert := "verify"
		if v := strings.ToLower(e.Value); v == "verify-ca" || v == "verify-full" {
			clientCert = "require"
		}
		s.set("client_cert", tomlString(clientCert), from(e))
		s.set("client_ca_file", tomlString(caE.Value), from(caE))
	} else if v := strings.ToLower(e.Value); v == "verify-ca" || v == "verify-full" {
		s.comment("NOTE: client_tls_sslmode = " + v + " without client_tls_ca_file: client certificates can't be checked; set [tls] client_ca_file and client_cert = \"require\".")
	}
	return s
}

// metricsSection is a commented hint: PgBouncer has no HTTP endpoint.
func (c *converter) metricsSection() *tomlSection {
	s := &tomlSection{Header: "metrics", Commented: true}
	s.Comments = []string{"Prometheus /metrics and /healthz (PgBouncer has SHOW STATS only). Uncomment to serve them:"}
	s.set("addr", tomlString("127.0.0.1:9930"), "")
	return s
}

// logSection: verbose.
func (c *converter) logSection() *tomlSection {
	s := &tomlSection{Header: "log"}
	if n, e, ok := c.intSetting("verbose"); ok && n > 0 {
		s.set("level", tomlString("debug"), from(e))
	}
	return s
}
