package fetch

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
)

func TestParseOCI(t *testing.T) {
	d := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		raw     string
		want    OCIRef
		wantErr string
	}{
		{raw: "oci://reg.example:5000/team/runc:1.3.0", want: OCIRef{Host: "reg.example:5000", Repository: "team/runc", Tag: "1.3.0"}},
		{raw: "oci://reg.example/team/runc:1.3.0@" + d, want: OCIRef{Host: "reg.example", Repository: "team/runc", Tag: "1.3.0", Manifest: d}},
		{raw: "oci://reg.example/team/runc@" + d, want: OCIRef{Host: "reg.example", Repository: "team/runc", Manifest: d}},
		// The mirror form: the directory of an upstream URL, the file's
		// name as tag and layer title; upper case and '+' made valid.
		{raw: "oci://127.0.0.1:5000/mirror/github.com/Mirantis/cri-dockerd/releases/download/v0.4.3/cri-dockerd-0.4.3.amd64.tgz",
			want: OCIRef{Host: "127.0.0.1:5000", Repository: "mirror/github.com/mirantis/cri-dockerd/releases/download/v0.4.3",
				Tag: "cri-dockerd-0.4.3.amd64.tgz", File: "cri-dockerd-0.4.3.amd64.tgz"}},
		{raw: "oci://m/x/docker-20.10.24+dfsg1.tgz", want: OCIRef{Host: "m", Repository: "x", Tag: "docker-20.10.24_dfsg1.tgz", File: "docker-20.10.24+dfsg1.tgz"}},
		{raw: "oci://reg.example/team/runc:1.3.0@sha256:abc", wantErr: "is not sha256:<64 hex>"},
		{raw: "oci://reg.example/runc", wantErr: "has no repository"},
		{raw: "oci:///team/runc:1", wantErr: "expected oci://host[:port]/repository"},
		{raw: "oci://user:pw@reg.example/team/runc:1", wantErr: "without credentials"},
		{raw: "oci://reg.example/team/runc:1?x=1", wantErr: "without credentials, query or fragment"},
		{raw: "oci://reg.example/team/runc:-bad", wantErr: "is not a valid tag"},
	}
	for _, tt := range tests {
		got, err := ParseOCI(tt.raw)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseOCI(%q) error = %v, want %q", tt.raw, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseOCI(%q) = %+v, %v\nwant %+v", tt.raw, got, err, tt.want)
		}
		if _, err := checkURL(tt.raw); err != nil {
			t.Errorf("checkURL(%q): %v", tt.raw, err)
		}
	}
}

func TestOCIPlainHTTP(t *testing.T) {
	for host, want := range map[string]bool{"127.0.0.1:5000": true, "localhost:5000": true, "[::1]:5000": true, "localhost": true,
		"reg.example": false, "10.0.0.1:5000": false, "127.0.0.1.nip.io": false} {
		if got := (OCIRef{Host: host}).PlainHTTP(); got != want {
			t.Errorf("PlainHTTP(%s) = %v", host, got)
		}
	}
}

// TestRegistryCredentials: auths entries, in Docker's spellings, give
// the credentials of their host; helpers are not consulted.
func TestRegistryCredentials(t *testing.T) {
	cfg := `{"auths": {"reg.example:5000": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("ci:s3cret:with:colons")) + `"},
	  "https://index.docker.io/v1/": {"identitytoken": "tok"}, "other.example": {"username": "u", "password": "p"}},
	  "credsStore": "desktop"}`
	cred, err := registryCredentials([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if c, _ := cred(ctx, "reg.example:5000"); c.Username != "ci" || c.Password != "s3cret:with:colons" {
		t.Errorf("reg.example:5000: %+v", c)
	}
	if c, _ := cred(ctx, "index.docker.io/v1"); c.RefreshToken != "tok" {
		t.Errorf("docker hub: %+v", c)
	}
	if c, _ := cred(ctx, "other.example"); c.Username != "u" || c.Password != "p" {
		t.Errorf("other.example: %+v", c)
	}
	if c, _ := cred(ctx, "unknown.example"); c.Username != "" || c.Password != "" {
		t.Errorf("unknown host got credentials: %+v", c)
	}
	if _, err := registryCredentials([]byte(`{"auths": {"h": {"auth": "not base64!"}}}`)); err == nil || strings.Contains(err.Error(), "not base64!") {
		t.Errorf("bad auth: %v (must not echo the value)", err)
	}
}
