package fetch

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

func TestLoadKeyringSeveralBlocks(t *testing.T) {
	k1 := newTestKey(t, "maintainer-one")
	k2 := newTestKey(t, "maintainer-two")
	k3 := newTestKey(t, "maintainer-three")
	// Shaped like runc.keyring: prose, then blocks separated by text.
	data := []byte("This is the set of keys trusted to sign runc releases.\n\n")
	data = append(data, []byte("Maintainer one:\n")...)
	data = append(data, armoredPublic(t, k1)...)
	data = append(data, []byte("\nMaintainer two <two@example.com>\nsome more text\n\n")...)
	data = append(data, armoredPublic(t, k2)...)
	data = append(data, []byte("\n---\n")...)
	data = append(data, armoredPublic(t, k3)...)
	data = append(data, []byte("trailing words\n")...)

	// The pitfall this guards against.
	if el, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data)); err != nil || len(el) != 1 {
		t.Fatalf("ReadArmoredKeyRing read %d keys (err %v); the test assumes it stops after the first block", len(el), err)
	}

	kr, err := LoadKeyring(data)
	if err != nil {
		t.Fatal(err)
	}
	got := kr.Fingerprints()
	want := []string{fingerprint(k1), fingerprint(k2), fingerprint(k3)}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("fingerprints = %v, want %v", got, want)
	}
	// A signature by the last key verifies: all blocks were loaded.
	msg := []byte("payload")
	info, err := kr.VerifyDetached(bytes.NewReader(msg), detachSign(t, k3, msg, nil))
	if err != nil {
		t.Fatal(err)
	}
	if info.Fingerprint != fingerprint(k3) || !strings.Contains(info.Identity, "maintainer-three") {
		t.Fatalf("info = %+v", info)
	}
}

func TestLoadKeyringErrors(t *testing.T) {
	k := newTestKey(t, "k")
	var priv bytes.Buffer
	{
		w, err := armorEncode(&priv, openpgp.PrivateKeyType)
		if err != nil {
			t.Fatal(err)
		}
		if err := k.SerializePrivate(w, nil); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	tests := []struct {
		name, data, wantErr string
	}{
		{"empty", "", "no OpenPGP public key block"},
		{"prose only", "no keys here\n", "no OpenPGP public key block"},
		{"private key", priv.String(), "private key"},
		{"unterminated", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n", "no end line"},
		{"signature block", string(detachSign(t, k, []byte("x"), nil)), `is "PGP SIGNATURE"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadKeyring([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestVerifyDetached(t *testing.T) {
	now := time.Now()
	good := newTestKey(t, "good")
	stranger := newTestKey(t, "stranger")
	// Created two days ago, valid for one hour: expired now.
	created := now.Add(-48 * time.Hour)
	expired := newTestKeyWith(t, "expired", keyConfig(created, time.Hour))
	whileValid := &packet.Config{Time: func() time.Time { return created.Add(30 * time.Minute) }}
	revoked := newTestKey(t, "revoked")
	msg := []byte("the artifact bytes\n")
	revokedSig := detachSign(t, revoked, msg, nil) // signed before the revocation
	if err := revoked.RevokeKey(packet.KeyCompromised, "test", nil); err != nil {
		t.Fatal(err)
	}

	goodSig := detachSign(t, good, msg, nil)
	var tamperedSig []byte
	{
		// Flip a base64 character in the body of the armored signature.
		lines := bytes.Split(bytes.Clone(goodSig), []byte("\n"))
		for i, l := range lines {
			if len(l) > 20 && !bytes.HasPrefix(l, []byte("-----")) {
				c := l[10]
				if c == 'A' {
					l[10] = 'B'
				} else {
					l[10] = 'A'
				}
				lines[i] = l
				break
			}
		}
		tamperedSig = bytes.Join(lines, []byte("\n"))
	}

	tests := []struct {
		name         string
		keys         []*openpgp.Entity
		allowExpired bool
		data         []byte
		sig          []byte
		wantErr      error
		wantText     string
		wantExpired  bool
	}{
		{name: "valid", keys: []*openpgp.Entity{good}, data: msg, sig: goodSig},
		{name: "tampered data", keys: []*openpgp.Entity{good}, data: []byte("the artifact bytes!\n"), sig: goodSig, wantErr: ErrSignature},
		{name: "tampered signature", keys: []*openpgp.Entity{good}, data: msg, sig: tamperedSig, wantErr: ErrSignature},
		{name: "unknown key", keys: []*openpgp.Entity{good}, data: msg, sig: detachSign(t, stranger, msg, nil), wantErr: ErrUnknownKey, wantText: fingerprint(stranger)},
		{name: "expired key refused", keys: []*openpgp.Entity{expired}, data: msg, sig: detachSign(t, expired, msg, whileValid), wantErr: ErrKeyExpired, wantText: "key expired"},
		{name: "expired key allowed", keys: []*openpgp.Entity{expired}, allowExpired: true, data: msg, sig: detachSign(t, expired, msg, whileValid), wantExpired: true},
		{name: "revoked key refused even when expired allowed", keys: []*openpgp.Entity{revoked}, allowExpired: true, data: msg, sig: revokedSig, wantErr: ErrKeyRevoked},
		{name: "not a signature", keys: []*openpgp.Entity{good}, data: msg, sig: []byte("hello"), wantErr: ErrSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kr := keyringOf(t, tt.keys...)
			kr.AllowExpired = tt.allowExpired
			info, err := kr.VerifyDetached(bytes.NewReader(tt.data), tt.sig)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if tt.wantText != "" && !strings.Contains(err.Error(), tt.wantText) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.Expired != tt.wantExpired {
				t.Fatalf("Expired = %v, want %v", info.Expired, tt.wantExpired)
			}
			if info.Fingerprint != fingerprint(tt.keys[0]) {
				t.Fatalf("signed by %s, want %s", info.Fingerprint, fingerprint(tt.keys[0]))
			}
		})
	}
}

func TestVerifyClearsigned(t *testing.T) {
	key := newTestKey(t, "release")
	kr := keyringOf(t, key)
	a := strings.Repeat("a1", 32)
	b := strings.Repeat("b2", 32)
	text := a + "  runc.amd64\n" + b + "  runc.arm64\n"
	signed := clearsignText(t, key, []byte(text), nil)

	body, info, err := kr.VerifyClearsigned(signed)
	if err != nil {
		t.Fatal(err)
	}
	if info.Fingerprint != fingerprint(key) {
		t.Fatalf("signer %s", info.Fingerprint)
	}
	if d, err := parseChecksumBody(body, "runc.amd64", ""); err != nil || d.Hex != a {
		t.Fatalf("parse verified body: %v %v", d, err)
	}

	tampered := bytes.Replace(signed, []byte(a), []byte(strings.Repeat("ff", 32)), 1)
	if _, _, err := kr.VerifyClearsigned(tampered); !errors.Is(err, ErrSignature) {
		t.Fatalf("tampered: err = %v", err)
	}
	if _, _, err := kr.VerifyClearsigned([]byte(text)); !errors.Is(err, ErrSignature) {
		t.Fatalf("not clearsigned: err = %v", err)
	}
	prefixed := append([]byte(strings.Repeat("ee", 32)+"  evil\n"), signed...)
	if _, _, err := kr.VerifyClearsigned(prefixed); err == nil {
		t.Fatal("unsigned prefix accepted")
	}
}
