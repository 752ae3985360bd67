// Command pgrecycle is a PostgreSQL connection pooler that recycles backend
// connections before they hurt the database.
package main

import (
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
