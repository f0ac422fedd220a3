package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nodeprov/nodeprov/spec/userdata"
)

func runArgs(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

const sum = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

func TestCloudInitCommand(t *testing.T) {
	dir := t.TempDir()
	specFile := filepath.Join(dir, "node.yaml")
	src := "apiVersion: nodeprov/v1alpha1\nkind: Node\nkernel: {modules: [overlay]}\n"
	os.WriteFile(specFile, []byte(src), 0o644)

	code, out, errs := runArgs(t, "", "cloud-init", "--binary-url", "https://example.com/nodeprov", "--binary-sha256", sum, specFile)
	if code != exitOK || !strings.HasPrefix(out, "#cloud-config\n") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(errs, "bytes of cloud-config user data, plain") {
		t.Errorf("no size summary on stderr: %s", errs)
	}
	if strings.Contains(out, userdata.LockPath) {
		t.Error("a lock file was shipped although there is none next to the spec")
	}

	// nodeprov.lock next to the spec travels with it; --lock-file none
	// leaves it out; a broken lock file is an error.
	lock := "https://example.com/a.tgz sha256:" + sum + "\n"
	os.WriteFile(filepath.Join(dir, "nodeprov.lock"), []byte(lock), 0o644)
	if code, out, errs = runArgs(t, "", "cloud-init", specFile); code != exitOK || !strings.Contains(out, userdata.LockPath) || !strings.Contains(out, lock) {
		t.Errorf("lock next to the spec: exit %d\n%s\n%s", code, out, errs)
	}
	if code, out, _ = runArgs(t, "", "cloud-init", "--lock-file", "none", specFile); code != exitOK || strings.Contains(out, userdata.LockPath) {
		t.Errorf("--lock-file none: exit %d\n%s", code, out)
	}
	os.WriteFile(filepath.Join(dir, "broken.lock"), []byte("not a lock\n"), 0o644)
	if code, _, errs = runArgs(t, "", "cloud-init", "--lock-file", filepath.Join(dir, "broken.lock"), specFile); code != exitInvalid || !strings.Contains(errs, "broken.lock:1") {
		t.Errorf("broken lock: exit %d\n%s", code, errs)
	}
	if code, _, errs = runArgs(t, "", "cloud-init", "--lock-file", filepath.Join(dir, "missing.lock"), specFile); code != exitInvalid {
		t.Errorf("missing explicit lock: exit %d\n%s", code, errs)
	}

	// From standard input, as MIME.
	if code, out, errs = runArgs(t, src, "cloud-init", "--format", "mime", "-"); code != exitOK || !strings.HasPrefix(out, "Content-Type: multipart/mixed; boundary=") {
		t.Errorf("mime from stdin: exit %d\n%s\n%s", code, out, errs)
	}

	// Size cap: exit 1 with the reason.
	if code, _, errs = runArgs(t, "", "cloud-init", "--max-size", "1000", specFile); code != exitFailure || !strings.Contains(errs, "over the 1000-byte cap") {
		t.Errorf("size cap: exit %d\n%s", code, errs)
	}
	if code, _, errs = runArgs(t, "", "cloud-init", "--max-size", "0", "--gzip", "never", specFile); code != exitOK {
		t.Errorf("no cap: exit %d\n%s", code, errs)
	}
}

func TestCloudInitCommandErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "node.yaml")
	os.WriteFile(good, []byte("apiVersion: nodeprov/v1alpha1\nkind: Node\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: nodeprov/v1alpha1\nkind: Node\nkernel: {modlues: [overlay]}\n"), 0o644)

	code, out, errs := runArgs(t, "", "cloud-init", bad)
	if code != exitInvalid || out != "" || !strings.Contains(errs, "bad.yaml:3:10: kernel: unknown key \"modlues\"") {
		t.Errorf("invalid spec: exit %d\nstdout %q\nstderr %s", code, out, errs)
	}
	for _, args := range [][]string{
		{"cloud-init"},
		{"cloud-init", "--format", "json", good},
		{"cloud-init", "--gzip", "sometimes", good},
		{"cloud-init", "--binary-url", "https://example.com/nodeprov", good},
		{"cloud-init", "--binary-sha256", sum, good},
		{"cloud-init", "--binary-url", "file:///nodeprov", "--binary-sha256", sum, good},
		{"cloud-init", "--binary-path", "relative/nodeprov", good},
		{"cloud-init", "--max-size", "-1", good},
	} {
		if code, out, errs := runArgs(t, "", args...); code != exitInvalid || out != "" {
			t.Errorf("%q: exit %d, stdout %q\n%s", args, code, out, errs)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	code, out, errs := runArgs(t, "", "version", "-o", "json")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errs)
	}
	for _, k := range []string{`"version": "dev"`, `"goVersion": "go`, `"os": "`, `"arch": "`, `"module": "github.com/nodeprov/nodeprov"`} {
		if !strings.Contains(out, k) {
			t.Errorf("version -o json lacks %s:\n%s", k, out)
		}
	}
	if code, out, _ = runArgs(t, "", "version"); code != exitOK || !strings.HasPrefix(out, "nodeprov dev\n") || !strings.Contains(out, "  go:       go") {
		t.Errorf("version: exit %d\n%s", code, out)
	}
	if code, _, _ = runArgs(t, "", "version", "extra"); code != exitInvalid {
		t.Errorf("version extra: exit %d", code)
	}
}
