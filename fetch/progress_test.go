package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
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

// syncBuffer is a bytes.Buffer that a test may read while mpb writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// redraw is how mpb moves back over the block it drew: cursor up n lines,
// erase to the end of the screen.
var redraw = regexp.MustCompile(`\x1b\[(\d+)A\x1b\[J`)

// screen replays terminal output and returns the lines left on screen. It
// fails on output a terminal would garble: a redraw over more lines than
// were drawn, a frame that does not end a line, any other control
// character.
func screen(t *testing.T, out string) []string {
	t.Helper()
	var lines []string
	add := func(s string) {
		if s == "" {
			return
		}
		if !strings.HasSuffix(s, "\n") {
			t.Fatalf("output leaves the cursor inside a line: %q", out)
		}
		for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
			if strings.ContainsAny(l, "\x1b\r") {
				t.Fatalf("unexpected control characters in %q", l)
			}
			lines = append(lines, l)
		}
	}
	pos := 0
	for _, m := range redraw.FindAllStringSubmatchIndex(out, -1) {
		add(out[pos:m[0]])
		n, _ := strconv.Atoi(out[m[2]:m[3]])
		if n > len(lines) {
			t.Fatalf("redraw over %d lines, %d on screen: %q", n, len(lines), out)
		}
		lines = lines[:len(lines)-n]
		pos = m[1]
	}
	add(out[pos:])
	return lines
}

// lineFor returns the one screen line that starts with name.
func lineFor(t *testing.T, lines []string, name string) string {
	t.Helper()
	var found []string
	for _, l := range lines {
		if strings.HasPrefix(l, name+" ") {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d lines for %s on screen:\n%s", len(found), name, strings.Join(lines, "\n"))
	}
	return found[0]
}

// finish calls Wait, failing the test if it hangs.
func finish(t *testing.T, p Progress) {
	t.Helper()
	f, ok := p.(Finisher)
	if !ok {
		t.Fatalf("%T is not a Finisher", p)
	}
	done := make(chan struct{})
	go func() {
		f.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait hangs")
	}
}

func TestBarProgressFinalLines(t *testing.T) {
	var buf syncBuffer
	p := NewBarProgress(&buf, 0)
	a := p.Start("containerd.tar.gz", 3<<20)
	b := p.Start("runc.amd64", 400<<10)
	c := p.Start("crictl.tar.gz", -1)
	d := p.Start("kubelet", 1<<20)
	a.Advance(1 << 20)
	b.Advance(100 << 10)
	c.Advance(1 << 20)
	d.Advance(1 << 20)
	b.Done(errors.New("unexpected EOF"))
	// Every byte arrived, yet the attempt failed: the line must say so.
	d.Done(errors.New("write:\nno space left"))
	a.Advance(2 << 20)
	a.Done(nil)
	c.Advance(1 << 20)
	c.Done(nil)
	// The last Done returns with the final frame out: what the caller
	// prints next cannot be overdrawn. Wait then adds nothing.
	out := buf.String()
	finish(t, p)
	if buf.String() != out {
		t.Fatalf("output went on after the last Done: %q", strings.TrimPrefix(buf.String(), out))
	}

	lines := screen(t, out)
	if len(lines) != 4 {
		t.Fatalf("want the 4 final lines only, got:\n%s", strings.Join(lines, "\n"))
	}
	for name, want := range map[string][]string{
		"containerd.tar.gz": {" 100 % ", " 3.0 MiB / 3.0 MiB ", `iB/s in \d+(\.\d+)?m?s$`},
		"crictl.tar.gz":     {" 100 % ", " 2.0 MiB / 2.0 MiB ", `iB/s in \d+(\.\d+)?m?s$`},
		"runc.amd64":        {`^runc\.amd64 +\[=+>-+\] `, " 25 % ", " 100.0 KiB / 400.0 KiB ", ` failed after \d.*: unexpected EOF$`},
		"kubelet":           {" 1.0 MiB / 1.0 MiB ", ` failed after \d.*: write: no space left$`},
	} {
		l := lineFor(t, lines, name)
		for _, w := range want {
			if !regexp.MustCompile(w).MatchString(l) {
				t.Errorf("line %q does not match %q", l, w)
			}
		}
		if ok := !strings.Contains(l, "failed"); ok != (name == "containerd.tar.gz" || name == "crictl.tar.gz") {
			t.Errorf("line %q: wrong outcome", l)
		}
	}
	t.Logf("screen:\n%s", strings.Join(lines, "\n"))
}

func TestBarProgressLive(t *testing.T) {
	var buf syncBuffer
	p := NewBarProgress(&buf, 0)
	a := p.Start("containerd.tar.gz", 2<<20)
	b := p.Start("crictl.tar.gz", -1)
	a.Advance(1 << 20)
	b.Advance(300 << 10)
	// The running bars are drawn and redrawn in place, one line each.
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := screen(t, buf.String())
		if len(lines) == 2 && strings.Contains(lines[0], " 50 % ") && strings.Contains(lines[1], " 300.0 KiB ") {
			if !strings.HasPrefix(lines[0], "containerd.tar.gz [") || !strings.Contains(lines[0], "1.0 MiB / 2.0 MiB") || !strings.Contains(lines[0], "/s") {
				t.Fatalf("running bar %q", lines[0])
			}
			t.Logf("running:\n%s", strings.Join(lines, "\n"))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("running bars not drawn; screen:\n%s", strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.Advance(1 << 20)
	a.Done(nil)
	// The finished download leaves its line above the one still running.
	for {
		lines := screen(t, buf.String())
		if len(lines) == 2 && strings.Contains(lines[0], "2.0 MiB / 2.0 MiB") && strings.HasPrefix(lines[1], "crictl.tar.gz ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("finished line not above the running bar; screen:\n%s", strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Done(nil)
	finish(t, p)
	if lines := screen(t, buf.String()); len(lines) != 2 || !strings.Contains(lines[1], " 300.0 KiB / 300.0 KiB ") {
		t.Fatalf("final screen:\n%s", strings.Join(lines, "\n"))
	}
}

func TestBarProgressFailsAfterLastByte(t *testing.T) {
	var buf syncBuffer
	p := NewBarProgress(&buf, 0)
	a := p.Start("kubelet", 1<<20)
	a.Advance(1 << 20)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), " 100 % ") {
		if time.Now().After(deadline) {
			t.Fatalf("bar not drawn: %q", buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Frames go on: reaching the size must not end the bar before Done.
	time.Sleep(3 * barRefresh)
	a.Done(errors.New("rename staging file: read-only file system"))
	finish(t, p)
	lines := screen(t, buf.String())
	if len(lines) != 1 || !strings.HasSuffix(lines[0], ": rename staging file: read-only file system") || !strings.Contains(lines[0], " failed after ") {
		t.Fatalf("screen:\n%s\nwant one line saying the download failed", strings.Join(lines, "\n"))
	}
}

func TestBarProgressConcurrent(t *testing.T) {
	var buf bytes.Buffer
	p := NewBarProgress(&buf, 0)
	const downloads, chunks = 8, 64
	var wg sync.WaitGroup
	for i := range downloads {
		wg.Go(func() {
			total := int64(chunks << 10)
			if i%3 == 0 {
				total = -1
			}
			tr := p.Start(fmt.Sprintf("artifact-%d.tar.gz", i), total)
			var inner sync.WaitGroup
			for range 4 { // several readers per download too
				inner.Go(func() {
					for range chunks / 4 {
						tr.Advance(1 << 10)
					}
				})
			}
			inner.Wait()
			if i == 5 {
				tr.Done(errors.New("boom"))
				return
			}
			tr.Done(nil)
		})
	}
	wg.Wait()
	finish(t, p)
	lines := screen(t, buf.String())
	if len(lines) != downloads {
		t.Fatalf("want %d final lines, got:\n%s", downloads, strings.Join(lines, "\n"))
	}
	for i := range downloads {
		l := lineFor(t, lines, fmt.Sprintf("artifact-%d.tar.gz", i))
		if !strings.Contains(l, " 64.0 KiB / 64.0 KiB ") {
			t.Errorf("line %q lacks the size", l)
		}
		if strings.Contains(l, "failed after") != (i == 5) {
			t.Errorf("line %q: wrong outcome", l)
		}
	}
}

func TestBarProgressQuietWithoutDownloads(t *testing.T) {
	var buf bytes.Buffer
	p := NewBarProgress(&buf, 0)
	finish(t, p)
	finish(t, p)
	if buf.Len() != 0 {
		t.Fatalf("no download, yet printed %q", buf.String())
	}
	// Finishing again after a download prints nothing more.
	tr := p.Start("runc.amd64", 10)
	tr.Advance(10)
	tr.Done(nil)
	finish(t, p)
	out := buf.String()
	finish(t, p)
	if buf.String() != out {
		t.Fatalf("second Wait printed %q", strings.TrimPrefix(buf.String(), out))
	}
}

func TestBarProgressWaiting(t *testing.T) {
	var buf syncBuffer
	p := NewBarProgress(&buf, 0)
	w, ok := p.(Waiter)
	if !ok {
		t.Fatal("bar progress is not a Waiter")
	}
	runc, crictl := "runc.amd64 "+waitingText, "crictl.tar.gz "+waitingText
	// With no download running, the line is out when Waiting returns.
	w.Waiting("runc.amd64")
	if lines := screen(t, buf.String()); len(lines) != 1 || lines[0] != runc {
		t.Fatalf("screen:\n%s", strings.Join(lines, "\n"))
	}
	// With one running, the line goes above its bar.
	a := p.Start("containerd.tar.gz", 100)
	a.Advance(50)
	w.Waiting("crictl.tar.gz")
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := screen(t, buf.String())
		if len(lines) == 3 && lines[0] == runc && lines[1] == crictl && strings.HasPrefix(lines[2], "containerd.tar.gz [") && strings.Contains(lines[2], " 50 % ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("screen:\n%s\nwant the waiting lines above the running bar", strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.Advance(50)
	a.Done(nil)
	finish(t, p)
	if lines := screen(t, buf.String()); len(lines) != 3 || lines[1] != crictl || !strings.Contains(lines[2], " 100 % ") {
		t.Fatalf("final screen:\n%s", strings.Join(lines, "\n"))
	}
}

func TestBarProgressWaitEndsUnfinished(t *testing.T) {
	var buf bytes.Buffer
	p := NewBarProgress(&buf, 0)
	a := p.Start("containerd.tar.gz", 1<<20)
	a.Advance(512 << 10)
	finish(t, p)
	lines := screen(t, buf.String())
	if len(lines) != 1 || !strings.Contains(lines[0], " 50 % ") || !strings.Contains(lines[0], "failed after") || !strings.Contains(lines[0], errUnfinished.Error()) {
		t.Fatalf("screen:\n%s", strings.Join(lines, "\n"))
	}
	// The download reporting late changes nothing.
	out := buf.String()
	a.Advance(512 << 10)
	a.Done(nil)
	if buf.String() != out {
		t.Fatalf("late Done printed %q", strings.TrimPrefix(buf.String(), out))
	}
	// A later download is drawn again, below.
	b := p.Start("runc.amd64", 10)
	b.Advance(10)
	b.Done(nil)
	lines = screen(t, buf.String())
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "runc.amd64 ") || !strings.Contains(lines[1], " 100 % ") {
		t.Fatalf("screen:\n%s", strings.Join(lines, "\n"))
	}
}

func TestBarProgressShortName(t *testing.T) {
	long := strings.Repeat("x", 40) + ".tar.gz"
	got := shortName(long)
	if utf8.RuneCountInString(got) != barNameWidth || !strings.HasPrefix(got, "…") || !strings.HasSuffix(got, "x.tar.gz") {
		t.Fatalf("shortName = %q", got)
	}
	if shortName("runc.amd64") != "runc.amd64" {
		t.Fatal("short names must stay")
	}
}

func TestFetchReportsProgress(t *testing.T) {
	body := payload(300_000)
	srv, _ := newServer(t, filesHandler(map[string][]byte{"/crictl.tar.gz": body}))
	var buf bytes.Buffer
	f, _ := newTestFetcher(t)
	f.Progress = NewLineProgress(&buf)
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

func TestFetchReportsProgressBars(t *testing.T) {
	body := payload(300_000)
	var mu sync.Mutex
	requests := 0
	srv, _ := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		first := requests == 1
		mu.Unlock()
		// No Content-Length: the size is unknown until the end.
		w.Write(body[:100_000])
		w.(http.Flusher).Flush()
		if first {
			panic(http.ErrAbortHandler) // cut the connection: a retry follows
		}
		w.Write(body[100_000:])
	}))
	var buf bytes.Buffer
	f, _ := newTestFetcher(t)
	f.Progress = NewBarProgress(&buf, 0)
	if _, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/crictl.tar.gz", Pinned: pin(sha256Of(body))}}); err != nil {
		t.Fatal(err)
	}
	finish(t, f.Progress)
	lines := screen(t, buf.String())
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "crictl.tar.gz ") || !strings.Contains(lines[0], "failed after") ||
		!strings.HasPrefix(lines[1], "crictl.tar.gz ") || !strings.Contains(lines[1], " 293.0 KiB / 293.0 KiB ") || strings.Contains(lines[1], "failed") {
		t.Fatalf("want the failed attempt's line, then the retry's; screen:\n%s", strings.Join(lines, "\n"))
	}
	t.Logf("screen:\n%s", strings.Join(lines, "\n"))
	// A cache hit prints nothing.
	buf.Reset()
	if _, err := f.Fetch(context.Background(), []Request{{URL: srv.URL + "/crictl.tar.gz", Pinned: pin(sha256Of(body))}}); err != nil {
		t.Fatal(err)
	}
	finish(t, f.Progress)
	if buf.Len() != 0 {
		t.Fatalf("cache hit printed %q", buf.String())
	}
}
