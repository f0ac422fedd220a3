package fetch

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCacheRefusesSymlinkedSubdirs: a cache whose tmp/, sha256/, sha512/,
// locks/ or urls/ is a symlink (planted in an image root, or left by a
// careless copy) is refused before anything is read, written or removed
// through it. Before
// the fix, a tmp/ symlink made the stale-staging cleanup delete everything
// in the directory it pointed to, and a sha256/ symlink put the verified
// artifacts there.
func TestCacheRefusesSymlinkedSubdirs(t *testing.T) {
	art := payload(1000)
	key := newTestKey(t, "maintainer")
	srv, _ := newServer(t, filesHandler(map[string][]byte{"/a": art, "/a.asc": detachSign(t, key, art, nil)}))
	for _, sub := range []string{tmpDir, SHA256, SHA512, locksDir, urlsDir} {
		t.Run(sub, func(t *testing.T) {
			cache, victim := t.TempDir(), t.TempDir()
			keep := filepath.Join(victim, "keep")
			if err := os.WriteFile(keep, []byte("not the cache's\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(victim, filepath.Join(cache, sub)); err != nil {
				t.Fatal(err)
			}
			f := &Fetcher{CacheDir: cache, Proxy: noProxy}
			req := Request{URL: srv.URL + "/a", Pinned: pin(sha512Of(art))}
			if sub == urlsDir { // used for artifacts only a signature verifies
				req = Request{URL: srv.URL + "/a", Signature: &SignatureSource{URL: srv.URL + "/a.asc", Keyring: keyringOf(t, key)}}
			}
			_, err := f.Fetch(context.Background(), []Request{req})
			if err == nil || !strings.Contains(err.Error(), filepath.Join(cache, sub)) || !strings.Contains(err.Error(), "symlink") {
				t.Errorf("err = %v, want a refusal naming %s as a symlink", err, filepath.Join(cache, sub))
			}
			if names := dirEntries(t, victim); len(names) != 1 || names[0] != "keep" {
				t.Errorf("the symlink's target was changed through the cache: %v", names)
			}
		})
	}
}

// TestCacheRefusesNonDirectorySubdir: a regular file where a cache
// directory belongs is an error naming it, not a confusing failure later.
func TestCacheRefusesNonDirectorySubdir(t *testing.T) {
	cache := t.TempDir()
	if err := os.WriteFile(filepath.Join(cache, SHA256), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f := &Fetcher{CacheDir: cache, Proxy: noProxy}
	_, err := f.Fetch(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(cache, SHA256)) || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("err = %v, want one naming %s as not a directory", err, filepath.Join(cache, SHA256))
	}
}
