package fetch

import (
	"errors"
	"strings"
	"testing"
)

func TestParseDigest(t *testing.T) {
	h256 := strings.Repeat("ab", 32)
	h512 := strings.Repeat("cd", 64)
	tests := []struct {
		name    string
		in      string
		want    Digest
		wantErr string
	}{
		{name: "sha256", in: "sha256:" + h256, want: Digest{SHA256, h256}},
		{name: "upper case", in: "SHA256:" + strings.ToUpper(h256), want: Digest{SHA256, h256}},
		{name: "sha512", in: "sha512:" + h512, want: Digest{SHA512, h512}},
		{name: "no algorithm", in: h256, wantErr: "want sha256:<hex>"},
		{name: "md5", in: "md5:" + h256[:32], wantErr: "unsupported algorithm"},
		{name: "sha256 too long", in: "sha256:" + h512, wantErr: "wants 64 hex digits, got 128"},
		{name: "sha512 too short", in: "sha512:" + h256, wantErr: "wants 128 hex digits, got 64"},
		{name: "not hex", in: "sha256:" + strings.Repeat("zz", 32), wantErr: "not hex"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDigest(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDigest(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v want %+v", got, tt.want)
			}
			if back, err := ParseDigest(got.String()); err != nil || back != got {
				t.Fatalf("String round trip: %v %v", back, err)
			}
		})
	}
}

func TestParseChecksums(t *testing.T) {
	a := strings.Repeat("a1", 32)
	b := strings.Repeat("b2", 32)
	c := strings.Repeat("c3", 64)
	up := strings.ToUpper(a)
	tests := []struct {
		name    string
		data    string
		file    string
		alg     string
		want    Digest
		wantErr string
	}{
		{name: "gnu text mode", data: a + "  runc.amd64\n" + b + "  runc.arm64\n", file: "runc.arm64", want: Digest{SHA256, b}},
		{name: "gnu binary mode", data: a + " *containerd-2.1.4-linux-amd64.tar.gz\n", file: "containerd-2.1.4-linux-amd64.tar.gz", want: Digest{SHA256, a}},
		{name: "one space", data: a + " crictl.tar.gz\n", file: "crictl.tar.gz", want: Digest{SHA256, a}},
		{name: "sha512 gnu", data: c + "  runsc\n", file: "runsc", want: Digest{SHA512, c}},
		{name: "upper-case hex normalised", data: up + "  x\n", file: "x", want: Digest{SHA256, a}},
		{name: "crlf line endings", data: a + "  x\r\n" + b + "  y\r\n", file: "y", want: Digest{SHA256, b}},
		{name: "bsd sha256", data: "SHA256 (cni.tgz) = " + a + "\n", file: "cni.tgz", want: Digest{SHA256, a}},
		{name: "bsd openssl style", data: "SHA2-512(runsc)= " + c + "\n", file: "runsc", want: Digest{SHA512, c}},
		{name: "bsd other algorithm ignored", data: "MD5 (x) = d41d8cd98f00b204e9800998ecf8427e\nSHA256 (x) = " + a + "\n", file: "x", want: Digest{SHA256, a}},
		{name: "bare hash", data: a + "\n", file: "anything", want: Digest{SHA256, a}},
		{name: "bare hash no newline", data: c, file: "", want: Digest{SHA512, c}},
		{name: "leading ./", data: a + "  ./bridge\n" + b + "  ./loopback\n", file: "loopback", want: Digest{SHA256, b}},
		{name: "name with ./ asked", data: a + "  bridge\n", file: "./bridge", want: Digest{SHA256, a}},
		{name: "path matched on basename", data: a + "  dist/linux/runc.amd64\n", file: "runc.amd64", want: Digest{SHA256, a}},
		{name: "exact beats basename", data: a + "  amd64/runc\n" + b + "  runc\n", file: "runc", want: Digest{SHA256, b}},
		{name: "full path disambiguates", data: a + "  amd64/runc\n" + b + "  arm64/runc\n", file: "arm64/runc", want: Digest{SHA256, b}},
		{name: "comments and blank lines", data: "# release 1.2\n\n" + a + "  x\n\n", file: "x", want: Digest{SHA256, a}},
		{name: "same entry twice agrees", data: a + "  x\n" + a + " *x\n", file: "x", want: Digest{SHA256, a}},
		{name: "algorithm filter", data: a + "  x\n" + c + "  x\n", file: "x", alg: SHA512, want: Digest{SHA512, c}},
		{name: "gnu escaped name", data: `\` + a + `  dir\\new\nline` + "\n", file: "dir\\new\nline", want: Digest{SHA256, a}},

		{name: "hash for another file", data: a + "  runc.arm64\n", file: "runc.amd64", wantErr: `no checksum for "runc.amd64"`},
		{name: "several different matches", data: a + "  amd64/runc\n" + b + "  arm64/runc\n", file: "runc", wantErr: "several different checksums"},
		{name: "mixed algorithms without filter", data: a + "  x\n" + c + "  x\n", file: "x", wantErr: "choose an algorithm"},
		{name: "malformed line fails whole file", data: a + "  x\nthis is not a checksum\n", file: "x", wantErr: "line 2"},
		{name: "wrong length gnu", data: a[:40] + "  x\n", file: "x", wantErr: "40 hex digits"},
		{name: "wrong length bsd", data: "SHA256 (x) = " + c + "\n", file: "x", wantErr: "128 hex digits, want 64"},
		{name: "bsd not hex", data: "SHA256 (x) = nothex\n", file: "x", wantErr: "not hex"},
		{name: "tab separator", data: a + "\tx\n", file: "x", wantErr: "want a space"},
		{name: "hash without name then more lines", data: a + "\n" + b + "  y\n", file: "y", wantErr: "only allowed as the file's only line"},
		{name: "empty", data: "", file: "x", wantErr: "no checksum lines"},
		{name: "only comments", data: "# nothing\n", file: "x", wantErr: "no checksum lines"},
		{name: "filter finds nothing", data: a + "  x\n", file: "x", alg: SHA512, wantErr: "no sha512 checksum"},
		{name: "bare hash wrong algorithm", data: a, file: "x", alg: SHA512, wantErr: "bare hash is sha256"},
		{name: "no name", data: a + "  x\n", file: "", wantErr: "no file name"},
		{name: "unsigned text around clearsign", data: "junk\n" + clearsignStart + "\n", file: "x", wantErr: "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseChecksumsWith([]byte(tt.data), tt.file, tt.alg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want containing %q", err, tt.wantErr)
				}
				if !errors.Is(err, ErrChecksumFile) {
					t.Fatalf("error %v is not ErrChecksumFile", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %v want %v", got, tt.want)
			}
		})
	}
}

func TestParseChecksumsClearsignedUnverified(t *testing.T) {
	key := newTestKey(t, "release")
	a := strings.Repeat("a1", 32)
	b := strings.Repeat("b2", 32)
	signed := clearsignText(t, key, []byte(a+"  runc.amd64\n"+b+"  runc.arm64\n"), nil)
	got, err := ParseChecksums(signed, "runc.arm64")
	if err != nil {
		t.Fatal(err)
	}
	if got != (Digest{SHA256, b}) {
		t.Fatalf("got %v", got)
	}
	// Text after the signature is refused, not silently dropped.
	_, err = ParseChecksums(append(signed, []byte(a+"  evil\n")...), "evil")
	if err == nil || !strings.Contains(err.Error(), "unsigned text after") {
		t.Fatalf("trailing text: err = %v", err)
	}
}

func FuzzParseChecksums(f *testing.F) {
	a := strings.Repeat("a1", 32)
	for _, s := range []string{
		a + "  x\n", a + " *x\n", "SHA256 (x) = " + a, a, `\` + a + `  a\\b`,
		clearsignStart + "\nHash: SHA256\n\n" + a + "  x\n-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n",
		"SHA2-512(x)= 00", "(((", "\\", a + " ", "MD5 () = ",
	} {
		f.Add([]byte(s), "x")
	}
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		d, err := ParseChecksums(data, name)
		if err != nil {
			return
		}
		if verr := d.Validate(); verr != nil {
			t.Fatalf("ParseChecksums returned invalid digest %v: %v", d, verr)
		}
	})
}
