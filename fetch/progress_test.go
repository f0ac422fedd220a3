package fetch

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// fakeClock advances only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestLineProgress(t *testing.T) {
	tests := []struct {
		name  string
		total int64
		steps []struct {
			n     int64
			after time.Duration
		}
		err  error
		want []string
	}{
		{
			name:  "quarters",
			total: 100,
			steps: []struct {
				n     int64
				after time.Duration
			}{{10, 0}, {20, 0}, {5, 0}, {30, 0}, {35, time.Second}},
			want: []string{
				"fetch runc.amd64: started, 100 B",
				"fetch runc.amd64: 30 B of 100 B (30%)",
				"fetch runc.amd64: 65 B of 100 B (65%)",
				"fetch runc.amd64: done, 100 B in 1s (100 B/s)",
			},
		},
		{
			name:  "unknown size every 5s",
			total: -1,
			steps: []struct {
				n     int64
				after time.Duration
			}{{1 << 20, time.Second}, {1 << 20, 5 * time.Second}, {1 << 20, time.Second}},
			err: errors.New("boom"),
			want: []string{
				"fetch runc.amd64: started, size unknown",
				"fetch runc.amd64: 2.0 MiB",
				"fetch runc.amd64: failed after 3.0 MiB: boom",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			clk := &fakeClock{t: time.Unix(1000, 0)}
			p := &lineProgress{w: &buf, now: clk.now, interval: 5 * time.Second}
			tr := p.Start("runc.amd64", tt.total)
			for _, s := range tt.steps {
				clk.t = clk.t.Add(s.after)
				tr.Advance(s.n)
			}
			tr.Done(tt.err)
			got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("got lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if strings.Contains(buf.String(), "\x1b") || strings.Contains(buf.String(), "\r") {
				t.Fatal("plain progress must not contain terminal control characters")
			}
		})
	}
}

func TestBarProgress(t *testing.T) {
	var buf bytes.Buffer
	clk := &fakeClock{t: time.Unix(1000, 0)}
	p := &barProgress{w: &buf, now: clk.now, minRedraw: 100 * time.Millisecond}
	a := p.Start("containerd.tar.gz", 1000)
	b := p.Start("runc.amd64", 400)
	clk.t = clk.t.Add(time.Second)
	a.Advance(500)
	b.Advance(100)
	a.Done(nil)
	out := buf.String()
	// Two active lines were on screen: the redraw moves up two lines and
	// clears, prints the finished line, then the remaining bar.
	last := out[strings.LastIndex(out, "\x1b[2F"):]
	if !strings.HasPrefix(last, "\x1b[2F\x1b[J") {
		t.Fatalf("redraw does not return to the block start: %q", last)
	}
	lines := strings.Split(strings.TrimSuffix(strings.TrimPrefix(last, "\x1b[2F\x1b[J"), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "containerd.tar.gz 500 B in 1s") || !strings.Contains(lines[1], "runc.amd64") || !strings.Contains(lines[1], " 25% ") {
		t.Fatalf("lines = %q", lines)
	}
	if p.drawn != 1 {
		t.Fatalf("drawn = %d, want 1 active line", p.drawn)
	}
}

func TestFetchReportsProgress(t *testing.T) {
	body := payload(300_000)
	srv, _ := newServer(t, filesHandler(map[string][]byte{"/crictl.tar.gz": body}))
	var buf bytes.Buffer
	f, _ := newTestFetcher(t)
	f.Progress = NewProgress(&buf, false)
	if _, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/crictl.tar.gz", Pinned: pin(sha256Of(body))}}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"fetch crictl.tar.gz: started, 293.0 KiB", "fetch crictl.tar.gz: done, 293.0 KiB in"} {
		if !strings.Contains(out, want) {
			t.Fatalf("progress output %q lacks %q", out, want)
		}
	}
	// A cache hit prints nothing.
	buf.Reset()
	if _, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/crictl.tar.gz", Pinned: pin(sha256Of(body))}}); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Fatalf("cache hit printed %q", buf.String())
	}
}
