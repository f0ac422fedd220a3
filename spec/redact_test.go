package spec

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"to: https://bob:S3cret@mirror:5000/gh/", "to: https://<redacted>@mirror:5000/gh/"},
		{`invalid URL "http://alice:Pr0xy@proxy:3128x": invalid port`, `invalid URL "http://<redacted>@proxy:3128x": invalid port`},
		{"http://token@host/x and https://u:p@h2", "http://<redacted>@host/x and https://<redacted>@h2"},
		{`      password: "hunter22"`, `      password: "<redacted>"`},
		{`  auth: {username: robot, password: hunter22}`, `  auth: {username: robot, password: <redacted>}`},
		{`+          password = 'hunter22'`, `+          password = '<redacted>'`},
		{`-  auth = "cm9ib3Q6aHVudGVy"`, `-  auth = "<redacted>"`},
		{`identityToken: eyJhbGciOi.x.y`, `identityToken: <redacted>`},
		{`    identitytoken = "abc"`, `    identitytoken = "<redacted>"`},
		{`registry.configs."h".auth.password = "x"`, `registry.configs."h".auth.password = "<redacted>"`},
		{`{"password": "x\"y", "user": "u"}`, `{"password": "<redacted>", "user": "u"}`},
		{`Authorization = "Basic dXNlcjpwYXNz"`, `Authorization = "<redacted>"`},
		{`token: abc`, `token: <redacted>`},
		// Not secrets: file paths to secrets, other keys, prose.
		{`passwordFile: /etc/nodeprov/registry-password`, `passwordFile: /etc/nodeprov/registry-password`},
		{`sandbox_image = "registry.k8s.io/pause:3.10"`, `sandbox_image = "registry.k8s.io/pause:3.10"`},
		{`the auth section`, `the auth section`},
		{`[plugins."io.containerd.grpc.v1.cri".registry.configs."h".auth]`, `[plugins."io.containerd.grpc.v1.cri".registry.configs."h".auth]`},
		{"already https://<redacted>@h/ and password: <redacted>", "already https://<redacted>@h/ and password: <redacted>"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

// The caret under a redacted source line stays on its value.
func TestRedactLineKeepsCaret(t *testing.T) {
	tests := []struct {
		line    string
		col     int
		want    string
		wantCol int
	}{
		{`  proxy: {http: "http://a:LONGSECRET@p:1", https: "x"}`, 50, `  proxy: {http: "http://<redacted>@p:1", https: "x"}`, 48},
		{`  to: https://bob:pw@m/`, 7, `  to: https://<redacted>@m/`, 7},
		{`  auth: {username: u, password: 12345678, x: y}`, 31, `  auth: {username: u, password: <redacted>, x: y}`, 31},
		{`  auth: {password: 12345678, usr: ü}`, 34, `  auth: {password: <redacted>, usr: ü}`, 36},
		{`https://u:secret@h`, 12, `https://<redacted>@h`, 9},
	}
	for _, tt := range tests {
		got, col := redactLine(tt.line, tt.col)
		if got != tt.want || col != tt.wantCol {
			t.Errorf("redactLine(%q, %d) = %q, %d; want %q, %d", tt.line, tt.col, got, col, tt.want, tt.wantCol)
		}
	}
}

// TestRedactFoldedKeys: the quick check before the expressions never lets
// a key through that the expressions match, in any case or folding.
func TestRedactFoldedKeys(t *testing.T) {
	for _, in := range []string{
		`PassWord = "hunter2"`,
		`paſſword = "hunter2"`, // U+017F folds to s
		`"AUTHORIZATION": "Basic dXNlcjpwYXNz"`,
		`see https://user:hunter2@registry.example`,
	} {
		if got := Redact(in); strings.Contains(got, "hunter2") || strings.Contains(got, "dXNlcjpwYXNz") {
			t.Errorf("Redact(%q) = %q: the secret is still there", in, got)
		}
	}
}
