package proxy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/pgrecycle/pgrecycle/config"
)

// configEntry is one row of SHOW CONFIG.
type configEntry struct {
	key, value, def string
	hasDefault      bool
}

// configEntries flattens the configuration to dotted keys, passwords
// redacted, each with its default: for a database's pool, recycle and
// parameters keys the default is the global one.
func configEntries(cfg *config.Config) ([]configEntry, error) {
	cur, err := flattenConfig(cfg.Redacted())
	if err != nil {
		return nil, err
	}
	defs, err := flattenConfig(config.Default())
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(cur))
	for k := range cur {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]configEntry, 0, len(keys))
	for _, k := range keys {
		e := configEntry{key: cur[k].key, value: cur[k].value}
		if d, ok := defs[k]; ok {
			e.def, e.hasDefault = d.value, true
		} else if path := cur[k].path; len(path) >= 4 && path[0] == "databases" &&
			(path[2] == "pool" || path[2] == "recycle") {
			g := append(toml.Key{path[2]}, path[3:]...)
			if d, ok := defs[joinKey(g)]; ok {
				e.def, e.hasDefault = d.value, true
			}
		}
		out = append(out, e)
	}
	return out, nil
}

type flatValue struct {
	path  toml.Key
	key   string
	value string
}

// flattenConfig encodes c as TOML and reads it back as nested tables, so
// SHOW CONFIG shows exactly what a file would hold.
func flattenConfig(c *config.Config) (map[string]flatValue, error) {
	doc, err := c.TOML()
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if err := toml.Unmarshal(doc, &tree); err != nil {
		return nil, err
	}
	out := make(map[string]flatValue)
	flattenInto(out, nil, tree)
	return out, nil
}

func flattenInto(out map[string]flatValue, path toml.Key, v any) {
	if m, ok := v.(map[string]any); ok {
		for k, sub := range m {
			flattenInto(out, append(path[:len(path):len(path)], k), sub)
		}
		return
	}
	k := joinKey(path)
	out[k] = flatValue{path: path, key: k, value: configValue(v)}
}

func joinKey(path toml.Key) string { return path.String() }

// configValue writes a leaf as users write it: strings bare, lists in
// TOML syntax.
func configValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			if s, ok := x.(string); ok {
				parts[i] = strconv.Quote(s)
			} else {
				parts[i] = configValue(x)
			}
		}
		return "[" + strings.Join(parts, ", ") + "]"
	default:
		return fmt.Sprint(v)
	}
}
