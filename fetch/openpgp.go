package fetch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// maxSignatureSize caps detached signature and keyring downloads.
const maxSignatureSize = 1 << 20

// Keyring is a set of trusted OpenPGP public keys.
//
// Expiry policy: a signature by an expired key, or an expired signature, is
// refused unless AllowExpired is set. With AllowExpired it is accepted only
// if the key was valid (created, not yet expired) at the signature's creation
// time, and the result reports it (SignatureInfo.Expired). A revoked key is
// always refused: revocation means the key must not be trusted at all.
type Keyring struct {
	// AllowExpired accepts valid signatures made while the key was valid by
	// a key that has expired since (or signatures that have expired).
	AllowExpired bool

	entities openpgp.EntityList
}

// LoadKeyring reads every OpenPGP public key in data. data may hold several
// armored "PGP PUBLIC KEY BLOCK"s with arbitrary text between them (runc's
// runc.keyring does); each block is decoded on its own, because
// openpgp.ReadArmoredKeyRing stops after the first. A binary (unarmored)
// keyring is accepted too. Private key blocks are refused.
func LoadKeyring(data []byte) (*Keyring, error) {
	var el openpgp.EntityList
	const begin = "-----BEGIN "
	rest := data
	blocks := 0
	for {
		i := bytes.Index(rest, []byte(begin))
		if i < 0 {
			break
		}
		lineEnd := bytes.IndexByte(rest[i:], '\n')
		if lineEnd < 0 {
			lineEnd = len(rest) - i
		}
		header := strings.TrimSpace(string(rest[i : i+lineEnd]))
		typ, ok := strings.CutSuffix(strings.TrimPrefix(header, begin), "-----")
		if !ok || typ == "" {
			return nil, fmt.Errorf("load keyring: malformed armor header %q", header)
		}
		blocks++
		endMarker := []byte("-----END " + typ + "-----")
		j := bytes.Index(rest[i:], endMarker)
		if j < 0 {
			return nil, fmt.Errorf("load keyring: block %d (%s) has no end line", blocks, typ)
		}
		seg := rest[i : i+j+len(endMarker)]
		rest = rest[i+j+len(endMarker):]
		if typ != openpgp.PublicKeyType {
			if typ == openpgp.PrivateKeyType {
				return nil, fmt.Errorf("load keyring: block %d is a private key: give public keys only", blocks)
			}
			return nil, fmt.Errorf("load keyring: block %d is %q, want %q", blocks, typ, openpgp.PublicKeyType)
		}
		ab, err := armor.Decode(bytes.NewReader(seg))
		if err != nil {
			return nil, fmt.Errorf("load keyring: block %d: %w", blocks, err)
		}
		got, err := openpgp.ReadKeyRing(ab.Body)
		if err != nil {
			return nil, fmt.Errorf("load keyring: block %d: %w", blocks, err)
		}
		el = append(el, got...)
	}
	if blocks == 0 {
		trimmed := bytes.TrimSpace(data)
		if len(trimmed) == 0 || trimmed[0]&0x80 == 0 {
			return nil, fmt.Errorf("load keyring: no OpenPGP public key block found")
		}
		got, err := openpgp.ReadKeyRing(bytes.NewReader(trimmed))
		if err != nil {
			return nil, fmt.Errorf("load keyring: %w", err)
		}
		el = got
	}
	for _, e := range el {
		if e.PrivateKey != nil {
			return nil, fmt.Errorf("load keyring: key %X contains private key material: give public keys only", e.PrimaryKey.Fingerprint)
		}
	}
	if len(el) == 0 {
		return nil, fmt.Errorf("load keyring: no keys")
	}
	return &Keyring{entities: el}, nil
}

// Fingerprints lists the primary key fingerprints (upper-case hex) of the
// keyring, in load order.
func (k *Keyring) Fingerprints() []string {
	out := make([]string, 0, len(k.entities))
	for _, e := range k.entities {
		out = append(out, fmt.Sprintf("%X", e.PrimaryKey.Fingerprint))
	}
	return out
}

// SignatureInfo describes a verified OpenPGP signature.
type SignatureInfo struct {
	// Fingerprint is the signer's primary key fingerprint (upper-case hex).
	Fingerprint string
	// KeyID is the id of the key that made the signature (a subkey or the
	// primary key), 16 upper-case hex digits.
	KeyID string
	// Identity is the signer's primary user id, if any.
	Identity string
	// Created is the signature's creation time.
	Created time.Time
	// Expired reports that the key or the signature has expired and the
	// signature was accepted only because the keyring allows it.
	Expired bool
}

// String renders the signer for reports: "FINGERPRINT (identity)".
func (s SignatureInfo) String() string {
	if s.Identity == "" {
		return s.Fingerprint
	}
	return s.Fingerprint + " (" + s.Identity + ")"
}

// VerifyDetached verifies an armored (or binary) detached signature over the
// bytes read from signed.
func (k *Keyring) VerifyDetached(signed io.Reader, signature []byte) (SignatureInfo, error) {
	pkts, err := signaturePackets(signature)
	if err != nil {
		return SignatureInfo{}, err
	}
	return k.verify(signed, pkts)
}

// VerifyClearsigned verifies a clearsigned message and returns its signed
// text. Text before or after the signed message is refused.
func (k *Keyring) VerifyClearsigned(data []byte) ([]byte, SignatureInfo, error) {
	text, block, err := splitClearsigned(data)
	if err != nil {
		return nil, SignatureInfo{}, err
	}
	if block == nil {
		return nil, SignatureInfo{}, fmt.Errorf("%w: not a clearsigned message", ErrSignature)
	}
	if block.ArmoredSignature.Type != openpgp.SignatureType {
		return nil, SignatureInfo{}, fmt.Errorf("%w: clearsigned message has a %q block, want %q", ErrSignature, block.ArmoredSignature.Type, openpgp.SignatureType)
	}
	pkts, err := io.ReadAll(io.LimitReader(block.ArmoredSignature.Body, maxSignatureSize))
	if err != nil {
		return nil, SignatureInfo{}, fmt.Errorf("%w: read clearsigned signature: %w", ErrSignature, err)
	}
	info, err := k.verify(bytes.NewReader(block.Bytes), pkts)
	if err != nil {
		return nil, info, err
	}
	return text, info, nil
}

// signaturePackets returns the binary signature packets of an armored or
// binary detached signature.
func signaturePackets(sig []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(sig)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty signature", ErrSignature)
	}
	if trimmed[0]&0x80 != 0 {
		return trimmed, nil
	}
	block, err := armor.Decode(bytes.NewReader(trimmed))
	if err != nil {
		return nil, fmt.Errorf("%w: decode armored signature: %w", ErrSignature, err)
	}
	if block.Type != openpgp.SignatureType {
		return nil, fmt.Errorf("%w: armored block is %q, want %q", ErrSignature, block.Type, openpgp.SignatureType)
	}
	pkts, err := io.ReadAll(io.LimitReader(block.Body, maxSignatureSize))
	if err != nil {
		return nil, fmt.Errorf("%w: decode armored signature: %w", ErrSignature, err)
	}
	return pkts, nil
}

// issuers lists the issuers named by the signature packets, and whether any
// of them is a signing key in the keyring.
func (k *Keyring) issuers(pkts []byte) (names []string, known bool, err error) {
	r := packet.NewReader(bytes.NewReader(pkts))
	for {
		p, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false, fmt.Errorf("%w: parse signature: %w", ErrSignature, err)
		}
		sig, ok := p.(*packet.Signature)
		if !ok {
			return nil, false, fmt.Errorf("%w: non-signature packet in signature", ErrSignature)
		}
		if sig.IssuerKeyId == nil {
			return nil, false, fmt.Errorf("%w: signature names no issuer", ErrSignature)
		}
		if len(sig.IssuerFingerprint) > 0 {
			names = append(names, fmt.Sprintf("%X", sig.IssuerFingerprint))
		} else {
			names = append(names, fmt.Sprintf("%016X", *sig.IssuerKeyId))
		}
		if len(k.entities.KeysByIdUsage(*sig.IssuerKeyId, packet.KeyFlagSign)) > 0 {
			known = true
		}
	}
	if len(names) == 0 {
		return nil, false, fmt.Errorf("%w: no signature packets", ErrSignature)
	}
	return names, known, nil
}

// verify checks binary signature packets over signed and applies the expiry
// and revocation policy.
func (k *Keyring) verify(signed io.Reader, pkts []byte) (SignatureInfo, error) {
	if k == nil || len(k.entities) == 0 {
		return SignatureInfo{}, fmt.Errorf("%w: empty keyring", ErrSignature)
	}
	names, known, err := k.issuers(pkts)
	if err != nil {
		return SignatureInfo{}, err
	}
	if !known {
		// Fail before hashing a possibly large artifact.
		return SignatureInfo{}, fmt.Errorf("%w: key %s", ErrUnknownKey, strings.Join(names, ", "))
	}
	sig, signer, err := openpgp.VerifyDetachedSignature(k.entities, signed, bytes.NewReader(pkts), &packet.Config{})
	var info SignatureInfo
	if sig != nil && signer != nil {
		info = describeSigner(signer, sig)
	}
	switch {
	case err == nil:
		return info, nil
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return info, fmt.Errorf("%w: key %s", ErrUnknownKey, strings.Join(names, ", "))
	case sig == nil || signer == nil:
		// The cryptographic check itself failed.
		return info, fmt.Errorf("%w: %w", ErrSignature, err)
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return info, fmt.Errorf("%w: key %s", ErrKeyRevoked, info)
	case errors.Is(err, pgperrors.ErrKeyExpired), errors.Is(err, pgperrors.ErrSignatureExpired):
		what := "key"
		if errors.Is(err, pgperrors.ErrSignatureExpired) {
			what = "signature"
		}
		if !k.AllowExpired {
			return info, fmt.Errorf("%w: %s expired (key %s, signed %s); allow expired keys for this keyring to accept it",
				ErrKeyExpired, what, info, info.Created.UTC().Format(time.RFC3339))
		}
		if !validWhenSigned(signer, sig) {
			return info, fmt.Errorf("%w: key %s was not valid when the signature was made (%s)",
				ErrKeyExpired, info, info.Created.UTC().Format(time.RFC3339))
		}
		info.Expired = true
		return info, nil
	default:
		return info, fmt.Errorf("%w: key %s: %w", ErrSignature, info, err)
	}
}

// describeSigner fills SignatureInfo from the verified signer.
func describeSigner(e *openpgp.Entity, sig *packet.Signature) SignatureInfo {
	info := SignatureInfo{
		Fingerprint: fmt.Sprintf("%X", e.PrimaryKey.Fingerprint),
		Created:     sig.CreationTime,
	}
	if sig.IssuerKeyId != nil {
		info.KeyID = fmt.Sprintf("%016X", *sig.IssuerKeyId)
	}
	if id := e.PrimaryIdentity(); id != nil {
		info.Identity = id.Name
	}
	return info
}

// validWhenSigned reports whether the signing key (primary and, for a
// subkey, the subkey) was valid at the signature's creation time.
func validWhenSigned(e *openpgp.Entity, sig *packet.Signature) bool {
	t := sig.CreationTime
	self, _ := e.PrimarySelfSignature()
	if self == nil || e.PrimaryKey.KeyExpired(self, t) {
		return false
	}
	if sig.IssuerKeyId == nil || *sig.IssuerKeyId == e.PrimaryKey.KeyId {
		return true
	}
	for _, sub := range e.Subkeys {
		if sub.PublicKey.KeyId == *sig.IssuerKeyId {
			return sub.Sig != nil && !sub.PublicKey.KeyExpired(sub.Sig, t)
		}
	}
	return false
}
