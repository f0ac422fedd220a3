package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The answers of a real API server are proven in e2e/fleet_test.go; these
// are the command's usage and the failures before any request.
func TestFleetUsageAndLocalErrors(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.conf")
	os.WriteFile(broken, []byte("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {token: s3cr3t-token, exec: {command: x}}}]\n"), 0o600)
	cases := []struct {
		name       string
		args       []string
		code       int
		stderr     string
		jsonErrMsg string
	}{
		{"no subcommand", []string{"fleet"}, exitInvalid, "fleet: expected a subcommand: check", ""},
		{"unknown subcommand", []string{"fleet", "list"}, exitInvalid, "expected a subcommand: check", ""},
		{"help", []string{"fleet", "--help"}, exitOK, "Usage: nodeprov fleet check --kubeconfig FILE", ""},
		{"no kubeconfig", []string{"fleet", "check"}, exitInvalid, "--kubeconfig is required", ""},
		{"bad page size", []string{"fleet", "check", "--kubeconfig", broken, "--page-size", "0"}, exitInvalid, "--page-size at least 1", ""},
		{"missing kubeconfig", []string{"fleet", "check", "--kubeconfig", filepath.Join(dir, "nope.conf")}, exitFailure,
			"fleet check: kubeconfig: " + filepath.Join(dir, "nope.conf") + " does not exist", ""},
		{"exec plugin, json", []string{"fleet", "check", "-o", "json", "--kubeconfig", broken}, exitFailure,
			broken + ":4:53: users[0].user.exec: not supported", broken + ":4:53: users[0].user.exec: not supported"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errb)
			if code != tc.code || !strings.Contains(errb.String(), tc.stderr) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to contain %q", code, tc.code, errb.String(), tc.stderr)
			}
			if strings.Contains(out.String()+errb.String(), "s3cr3t-token") {
				t.Errorf("the output shows the token:\n%s%s", out.String(), errb.String())
			}
			if tc.jsonErrMsg == "" {
				return
			}
			var rep struct {
				Command string
				OK      bool
				Error   struct{ Message, Class string }
			}
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, out.String())
			}
			if rep.Command != "fleet check" || rep.OK || rep.Error.Class != "fleet" || !strings.Contains(rep.Error.Message, tc.jsonErrMsg) {
				t.Errorf("report %+v", rep)
			}
		})
	}
}
