package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// runcRelease builds a runc-shaped release: runc.<arch> binaries, a
// clearsigned runc.sha256sum and runc.<arch>.asc detached signatures.
type runcRelease struct {
	amd64, arm64 []byte
	files        map[string][]byte
}

func newRuncRelease(t testing.TB, signer *openpgp.Entity, cfg *packet.Config) *runcRelease {
	t.Helper()
	r := &runcRelease{amd64: payload(70_000), arm64: append(payload(60_000), 1)}
	sums := fmt.Sprintf("%s  runc.amd64\n%s  runc.arm64\n", sha256Of(r.amd64).Hex, sha256Of(r.arm64).Hex)
	r.files = map[string][]byte{
		"/runc.amd64":      r.amd64,
		"/runc.arm64":      r.arm64,
		"/runc.sha256sum":  clearsignText(t, signer, []byte(sums), cfg),
		"/runc.amd64.asc":  detachSign(t, signer, r.amd64, cfg),
		"/runc.arm64.asc":  detachSign(t, signer, r.arm64, cfg),
		"/plain.sha256sum": []byte(sums),
	}
	return r
}

func TestFetchSigned(t *testing.T) {
	now := time.Now()
	maintainer := newTestKey(t, "maintainer")
	stranger := newTestKey(t, "stranger")
	created := now.Add(-72 * time.Hour)
	old := newTestKeyWith(t, "old-maintainer", keyConfig(created, 24*time.Hour))
	whileValid := &packet.Config{Time: func() time.Time { return created.Add(time.Hour) }}

	good := newRuncRelease(t, maintainer, nil)
	byStranger := newRuncRelease(t, stranger, nil)
	byOld := newRuncRelease(t, old, whileValid)

	tamperedSums := newRuncRelease(t, maintainer, nil)
	tamperedSums.files["/runc.sha256sum"] = bytes.Replace(tamperedSums.files["/runc.sha256sum"],
		[]byte(sha256Of(tamperedSums.amd64).Hex), []byte(sha256Of([]byte("evil")).Hex), 1)
	tamperedSums.files["/runc.amd64"] = []byte("evil")

	tamperedArtifact := newRuncRelease(t, maintainer, nil)
	tamperedArtifact.files["/runc.amd64"] = append(bytes.Clone(tamperedArtifact.amd64[:100]), 0xff)

	type reqKind int
	const (
		clearsigned          reqKind = iota // checksum file clearsigned, plus .asc
		detachedOnly                        // only the artifact's .asc
		unsignedSums                        // plain checksum file, no keyring
		clearsignedNoKeyring                // clearsigned file parsed without verification
	)
	tests := []struct {
		name          string
		rel           *runcRelease
		keys          []*openpgp.Entity
		allowExpired  bool
		kind          reqKind
		requirePinned bool
		wantErr       error
		wantText      string
		wantTrust     string
		wantExpired   bool
		wantSigner    *openpgp.Entity
	}{
		{name: "clearsigned sums and asc", rel: good, keys: []*openpgp.Entity{stranger, maintainer}, kind: clearsigned, wantTrust: TrustSigned, wantSigner: maintainer},
		{name: "detached signature only", rel: good, keys: []*openpgp.Entity{maintainer}, kind: detachedOnly, wantTrust: TrustSigned, wantSigner: maintainer},
		{name: "unsigned checksum file is same-origin", rel: good, kind: unsignedSums, wantTrust: TrustSameOrigin},
		{name: "clearsigned without keyring is same-origin", rel: good, kind: clearsignedNoKeyring, wantTrust: TrustSameOrigin},
		{name: "require pinned refuses same-origin", rel: good, kind: unsignedSums, requirePinned: true, wantErr: ErrSameOrigin},
		{name: "require pinned accepts signed", rel: good, keys: []*openpgp.Entity{maintainer}, kind: clearsigned, requirePinned: true, wantTrust: TrustSigned, wantSigner: maintainer},
		{name: "tampered clearsigned checksum file", rel: tamperedSums, keys: []*openpgp.Entity{maintainer}, kind: clearsigned, wantErr: ErrSignature},
		{name: "tampered artifact fails its signature", rel: tamperedArtifact, keys: []*openpgp.Entity{maintainer}, kind: detachedOnly, wantErr: ErrSignature},
		{name: "unknown signing key", rel: byStranger, keys: []*openpgp.Entity{maintainer}, kind: clearsigned, wantErr: ErrUnknownKey, wantText: fingerprint(stranger)},
		{name: "expired key refused", rel: byOld, keys: []*openpgp.Entity{old}, kind: clearsigned, wantErr: ErrKeyExpired, wantText: "allow expired keys"},
		{name: "expired key allowed and reported", rel: byOld, keys: []*openpgp.Entity{old}, allowExpired: true, kind: clearsigned, wantTrust: TrustSigned, wantExpired: true, wantSigner: old},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, hits := newServer(t, filesHandler(tt.rel.files))
			var kr *Keyring
			if len(tt.keys) > 0 {
				kr = keyringOf(t, tt.keys...)
				kr.AllowExpired = tt.allowExpired
			}
			req := Request{URL: srv.URL + "/runc.amd64"}
			switch tt.kind {
			case clearsigned:
				req.Checksum = &ChecksumSource{URL: srv.URL + "/runc.sha256sum", Signature: &SignatureSource{Keyring: kr}}
				req.Signature = &SignatureSource{URL: srv.URL + "/runc.amd64.asc", Keyring: kr}
			case detachedOnly:
				req.Signature = &SignatureSource{URL: srv.URL + "/runc.amd64.asc", Keyring: kr}
			case unsignedSums:
				req.Checksum = &ChecksumSource{URL: srv.URL + "/plain.sha256sum"}
			case clearsignedNoKeyring:
				req.Checksum = &ChecksumSource{URL: srv.URL + "/runc.sha256sum"}
			}
			f, _ := newTestFetcher(t)
			f.RequirePinned = tt.requirePinned
			res, err := f.Fetch(context.Background(), []Request{req})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if tt.wantText != "" && !strings.Contains(err.Error(), tt.wantText) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantText)
				}
				t.Logf("error: %v", err)
				assertNothingKept(t, f.CacheDir)
				if tt.kind == clearsigned && hits.count("/runc.amd64") != 0 {
					t.Fatal("artifact downloaded although its checksum file was refused")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := res[0]
			if r.Trust != tt.wantTrust || r.KeyExpired != tt.wantExpired || r.SHA256 != sha256Of(tt.rel.amd64).Hex {
				t.Fatalf("result = %+v", r)
			}
			if tt.wantSigner != nil && !strings.HasPrefix(r.SignedBy, fingerprint(tt.wantSigner)) {
				t.Fatalf("SignedBy = %q, want %s", r.SignedBy, fingerprint(tt.wantSigner))
			}
			if tt.wantSigner == nil && r.SignedBy != "" {
				t.Fatalf("SignedBy = %q for an unsigned digest", r.SignedBy)
			}
			t.Logf("trust=%s signedBy=%q expired=%v", r.Trust, r.SignedBy, r.KeyExpired)
		})
	}
}

// Resolve reports a signed digest from a clearsigned checksum file without
// fetching the artifact.
func TestResolveSigned(t *testing.T) {
	key := newTestKey(t, "maintainer")
	rel := newRuncRelease(t, key, nil)
	srv, hits := newServer(t, filesHandler(rel.files))
	kr := keyringOf(t, key)
	f, _ := newTestFetcher(t)
	var reqs []Request
	for _, arch := range []string{"amd64", "arm64"} {
		reqs = append(reqs, Request{
			URL:      srv.URL + "/runc." + arch,
			Checksum: &ChecksumSource{URL: srv.URL + "/runc.sha256sum", Signature: &SignatureSource{Keyring: kr}},
		})
	}
	res, err := f.ResolveAll(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Digest != sha256Of(rel.amd64) || res[1].Digest != sha256Of(rel.arm64) || res[0].Trust != TrustSigned {
		t.Fatalf("resolutions %+v", res)
	}
	if hits.count("/runc.amd64")+hits.count("/runc.arm64") != 0 || hits.count("/runc.sha256sum") != 1 {
		t.Fatalf("requests: %v", hits.counts)
	}
}

// With only a detached signature, Resolve has to fetch the artifact; the
// result is signed and the artifact is cached for the next apply.
func TestResolveDetachedOnly(t *testing.T) {
	key := newTestKey(t, "maintainer")
	rel := newRuncRelease(t, key, nil)
	srv, hits := newServer(t, filesHandler(rel.files))
	f, _ := newTestFetcher(t)
	res, err := f.Resolve(context.Background(), Request{
		URL:       srv.URL + "/runc.arm64",
		Signature: &SignatureSource{URL: srv.URL + "/runc.arm64.asc", Keyring: keyringOf(t, key)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != sha256Of(rel.arm64) || res.Trust != TrustSigned || !strings.HasPrefix(res.SignedBy, fingerprint(key)) {
		t.Fatalf("resolution %+v", res)
	}
	if hits.count("/runc.arm64") != 1 {
		t.Fatalf("artifact fetched %d times", hits.count("/runc.arm64"))
	}
	if _, ok := f.Lookup(res.Digest); !ok {
		t.Fatal("resolved artifact not cached")
	}
}
