package proxy

import (
	"testing"

	"github.com/pgrecycle/pgrecycle/pool"
)

// TestApplyParamsMemo: a shared settings set found to match a backend is
// remembered there, so the next client of that set skips the comparison;
// a session with its own set (or extra settings) is always compared.
func TestApplyParamsMemo(t *testing.T) {
	sets := newParamSets()
	want, id := sets.share(map[string]string{"TimeZone": "UTC", "application_name": "app"})
	b := &pool.Backend{Params: map[string]string{"TimeZone": "UTC", "application_name": "app", "DateStyle": "ISO, MDY"}}
	s := &session{id: 1, want: want, wantSet: id}
	if err := s.applyParams(b); err != nil {
		t.Fatal(err)
	}
	if b.SettingsMatched != id {
		t.Fatalf("a matching shared set was not remembered: SettingsMatched %d, want %d", b.SettingsMatched, id)
	}
	// Remembered: no comparison, so no SET is attempted (the backend has
	// no connection to send one on) even though Params no longer match.
	b.Params["TimeZone"] = "Asia/Tokyo"
	if err := s.applyParams(b); err != nil {
		t.Fatalf("a remembered match was compared again: %v", err)
	}

	// Extra settings are not covered by the set's number.
	b.SettingsMatched = 0
	b.Params["TimeZone"] = "UTC"
	withExtra := &session{id: 2, want: want, wantSet: id, extra: map[string]string{"search_path": "a"}}
	b.ProxySet = map[string]string{"search_path": "a"}
	if err := withExtra.applyParams(b); err != nil {
		t.Fatal(err)
	}
	if b.SettingsMatched != 0 {
		t.Fatalf("a match with extra settings was remembered under the set's number %d", b.SettingsMatched)
	}
}
