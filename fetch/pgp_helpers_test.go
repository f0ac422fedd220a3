package fetch

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// keyConfig returns a fast (Ed25519) key configuration at time at (zero:
// now) with the given lifetime (0: none).
func keyConfig(at time.Time, lifetime time.Duration) *packet.Config {
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, KeyLifetimeSecs: uint32(lifetime / time.Second)}
	if !at.IsZero() {
		cfg.Time = func() time.Time { return at }
	}
	return cfg
}

// newTestKey generates a signing key valid from now on.
func newTestKey(t testing.TB, name string) *openpgp.Entity {
	t.Helper()
	return newTestKeyWith(t, name, keyConfig(time.Time{}, 0))
}

func newTestKeyWith(t testing.TB, name string, cfg *packet.Config) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "test", name+"@example.com", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// armoredPublic exports e's public key as one armored block.
func armoredPublic(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

func keyringOf(t testing.TB, es ...*openpgp.Entity) *Keyring {
	t.Helper()
	var all []byte
	for _, e := range es {
		all = append(all, armoredPublic(t, e)...)
	}
	kr, err := LoadKeyring(all)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// detachSign makes an armored detached signature; cfg may set the time.
func detachSign(t testing.TB, e *openpgp.Entity, data []byte, cfg *packet.Config) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&buf, e, bytes.NewReader(data), cfg); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// clearsignText clearsigns data.
func clearsignText(t testing.TB, e *openpgp.Entity, data []byte, cfg *packet.Config) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := clearsign.Encode(&buf, e.PrivateKey, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fingerprint is e's primary key fingerprint as SignatureInfo reports it.
func fingerprint(e *openpgp.Entity) string {
	return fmt.Sprintf("%X", e.PrimaryKey.Fingerprint)
}

func armorEncode(w *bytes.Buffer, typ string) (interface {
	Write([]byte) (int, error)
	Close() error
}, error) {
	return armor.Encode(w, typ, nil)
}
