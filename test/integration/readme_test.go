package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestREADMEFeatureTable keeps the README's feature table honest: every
// test it cites must exist in this package.
func TestREADMEFeatureTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	cited := regexp.MustCompile("`(Test[A-Za-z0-9_]+)`").FindAllStringSubmatch(string(readme), -1)
	if len(cited) < 5 {
		t.Fatalf("README cites only %d tests", len(cited))
	}
	for _, m := range cited {
		if !strings.Contains(src.String(), "func "+m[1]+"(") {
			t.Errorf("README cites %s, which does not exist", m[1])
		}
	}
}
