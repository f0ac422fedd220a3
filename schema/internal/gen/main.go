// Command gen writes nodeprov.schema.json from the spec types. It is run by
// `go generate ./schema` (from the schema directory):
//
//	go run ./internal/gen [-o nodeprov.schema.json] [-md REFERENCE.md]
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nodeprov/nodeprov/schema"
)

func main() {
	out := flag.String("o", "nodeprov.schema.json", "write the JSON Schema to `file`")
	md := flag.String("md", "", "also write the Markdown spec reference to `file`")
	flag.Parse()
	if err := run(*out, *md); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out, md string) error {
	js, err := schema.Generate()
	if err != nil {
		return err
	}
	if err := writeFile(out, js); err != nil {
		return err
	}
	if md == "" {
		return nil
	}
	text, err := schema.Markdown()
	if err != nil {
		return err
	}
	return writeFile(md, []byte(text))
}

// writeFile replaces name atomically, leaving it untouched when the
// contents are already the same (so mtimes only move on real changes).
func writeFile(name string, data []byte) error {
	if old, err := os.ReadFile(name); err == nil && string(old) == string(data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), ".gen-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
