package proxy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/pgrecycle/pgrecycle/config"
)

// trackedParams are the client-visible settings the server reports with
// ParameterStatus and that a client may change. In transaction pooling the
// proxy re-applies a client's values when it gets a backend whose values
// differ, so no client sees another's settings.
var trackedParams = [...]string{
	"application_name",
	"client_encoding",
	"DateStyle",
	"IntervalStyle",
	"standard_conforming_strings",
	"TimeZone",
}

// canonicalTracked maps a case-insensitive parameter name to its tracked
// spelling, or "" when it isn't tracked.
func canonicalTracked(name string) string {
	for _, k := range trackedParams {
		if strings.EqualFold(k, name) {
			return k
		}
	}
	return ""
}

// quoteLiteral dollar-quotes a value, which is immune to
// standard_conforming_strings and backslashes.
func quoteLiteral(v string) string {
	tag := "$pgr$"
	for i := 0; strings.Contains(v, tag) || strings.HasSuffix(v, "$pgr"); i++ {
		tag = fmt.Sprintf("$pgr%d$", i)
	}
	return tag + v + tag
}

// parseOptions reads the startup "options" value: "-c name=value",
// "-cname=value" and "--name=value" switches separated by unescaped
// whitespace, with backslash escapes, as PostgreSQL does.
func parseOptions(s string) (map[string]string, error) {
	var tokens []string
	var cur strings.Builder
	inToken := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inToken = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inToken {
				tokens = append(tokens, cur.String())
				cur.Reset()
				inToken = false
			}
		default:
			cur.WriteByte(c)
			inToken = true
		}
	}
	if inToken {
		tokens = append(tokens, cur.String())
	}
	out := make(map[string]string)
	for i := 0; i < len(tokens); i++ {
		t := tokens[i]
		var kv string
		switch {
		case t == "-c":
			if i+1 >= len(tokens) {
				return nil, fmt.Errorf("option -c needs name=value")
			}
			i++
			kv = tokens[i]
		case strings.HasPrefix(t, "-c"):
			kv = t[2:]
		case strings.HasPrefix(t, "--"):
			kv = t[2:]
		default:
			return nil, fmt.Errorf("unsupported startup option %q: only -c name=value and --name=value are supported", t)
		}
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("option %q needs name=value", kv)
		}
		out[strings.ReplaceAll(name, "-", "_")] = value
	}
	return out, nil
}

// checkParameterName refuses a client startup setting no PostgreSQL
// setting can have as its name, as the server would.
func checkParameterName(name string) *clientError {
	if len(name) > 63 || !config.ValidParameterName(name) {
		return fatalf("42704", "unrecognized configuration parameter %q", name)
	}
	return nil
}

// mergeOptions adds the settings of the startup "options" to the
// client's other startup parameters. PostgreSQL applies options first and
// the other parameters after, so a setting given both ways keeps the
// parameter's value (GUC names compare case-insensitively).
func mergeOptions(client, opts map[string]string) {
	given := make(map[string]bool, len(client))
	for k := range client {
		given[strings.ToLower(k)] = true
	}
	for k, v := range opts {
		if !given[strings.ToLower(k)] {
			client[k] = v
		}
	}
}

// paramSQL builds the statements that bring backend settings to what the
// client expects: tracked values that differ, and the client's other
// startup settings (set or reset so a previous client's don't linger).
// It returns "" when nothing differs, the common case.
func paramSQL(want map[string]string, extra map[string]string, current map[string]string, proxySet map[string]string) string {
	if paramsMatch(want, extra, current, proxySet) {
		return "" // the common case, without building anything
	}
	var sb strings.Builder
	for _, k := range trackedParams {
		v, ok := want[k]
		if !ok || current[k] == v {
			continue
		}
		fmt.Fprintf(&sb, "SET %s TO %s;", k, quoteLiteral(v))
	}
	if len(extra) == 0 && len(proxySet) == 0 {
		return sb.String()
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// set_config parses a value as the startup packet does: SET would
	// take a quoted list such as search_path's "a,b" as one element.
	sep := "SELECT "
	for _, k := range keys {
		if cur, ok := proxySet[k]; !ok || cur != extra[k] {
			fmt.Fprintf(&sb, "%spg_catalog.set_config(%s, %s, false)", sep, quoteLiteral(k), quoteLiteral(extra[k]))
			sep = ", "
		}
	}
	if sep != "SELECT " {
		sb.WriteByte(';')
	}
	for k := range proxySet {
		if _, ok := extra[k]; !ok {
			fmt.Fprintf(&sb, "RESET %s;", quoteSettingName(k))
		}
	}
	return sb.String()
}

// quoteSettingName quotes each part of a setting's name, which
// checkParameterName limited to letters, digits, "_" and ".": a part
// that is a reserved word (some.var, select.x) is a syntax error unquoted.
// Setting names compare case-insensitively, so quoting keeps the meaning.
func quoteSettingName(name string) string {
	return `"` + strings.ReplaceAll(name, ".", `"."`) + `"`
}

// paramsMatch reports whether the backend already has the client's
// settings.
func paramsMatch(want, extra, current, proxySet map[string]string) bool {
	for _, k := range trackedParams {
		if v, ok := want[k]; ok && current[k] != v {
			return false
		}
	}
	if len(extra) != len(proxySet) {
		return false
	}
	for k, v := range extra {
		if cur, ok := proxySet[k]; !ok || cur != v {
			return false
		}
	}
	return true
}
