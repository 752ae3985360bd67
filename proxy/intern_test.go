package proxy

import "testing"

func TestParamSetsShareEqualSets(t *testing.T) {
	p := newParamSets()
	a, idA := p.share(map[string]string{"client_encoding": "UTF8", "TimeZone": "UTC"})
	b, idB := p.share(map[string]string{"TimeZone": "UTC", "client_encoding": "UTF8"})
	if len(a) != 2 || len(b) != 2 {
		t.Fatal("unexpected")
	}
	if idA == 0 || idA != idB {
		t.Fatalf("equal sets numbered %d and %d: one non-zero number wanted", idA, idB)
	}
	a["probe"] = "x" // the shared map itself: b must see it if they are one
	if b["probe"] != "x" {
		t.Fatal("equal parameter sets were not shared")
	}
	delete(a, "probe")
	c, idC := p.share(map[string]string{"TimeZone": "UTC", "client_encoding": "LATIN1"})
	if c["client_encoding"] != "LATIN1" || idC == idA {
		t.Fatal("a different set was replaced by a shared one")
	}
	// Keys and values are separated, so "ab"+"c" and "a"+"bc" differ.
	d, _ := p.share(map[string]string{"ab": "c"})
	e, _ := p.share(map[string]string{"a": "bc"})
	if d["ab"] != "c" || e["a"] != "bc" {
		t.Fatal("sets with the same concatenation were confused")
	}
	for i := range maxParamSets + 10 {
		p.share(map[string]string{"application_name": string(rune('a' + i%26)), "n": string(rune(i))})
	}
	if n := p.size(); n > maxParamSets {
		t.Fatalf("%d shared sets kept, at most %d allowed", n, maxParamSets)
	}
	// After the table started over, an equal set is a new set: its number
	// must not be one an existing set had.
	if _, again := p.share(map[string]string{"client_encoding": "UTF8", "TimeZone": "UTC"}); again == idA || again == idC {
		t.Fatalf("a set shared again after the table started over got an old number %d", again)
	}
}
