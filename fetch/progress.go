package fetch

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Progress receives download progress. Implementations must be safe for
// concurrent use: downloads run in parallel. A nil Progress in a Fetcher
// prints nothing (JSON output mode).
type Progress interface {
	// Start announces one download attempt of name; total is the expected
	// size in bytes, or -1 when the server did not say. A retry starts a
	// new attempt.
	Start(name string, total int64) Tracker
}

// Tracker follows one download attempt.
type Tracker interface {
	// Advance reports n more bytes received.
	Advance(n int64)
	// Done ends the attempt; err is nil on success.
	Done(err error)
}

// NewProgress returns a live bar per download (redrawn in place with ANSI
// escapes) when isTerminal, and plain periodic lines otherwise (every 5s or
// every 25%), suitable for cloud-init logs.
func NewProgress(w io.Writer, isTerminal bool) Progress {
	if isTerminal {
		return &barProgress{w: w, now: time.Now, minRedraw: 100 * time.Millisecond}
	}
	return &lineProgress{w: w, now: time.Now, interval: 5 * time.Second}
}

// humanBytes formats n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return humanBytes(int64(float64(n)/d.Seconds())) + "/s"
}

// lineProgress prints plain lines.
type lineProgress struct {
	mu       sync.Mutex
	w        io.Writer
	now      func() time.Time
	interval time.Duration
}

func (p *lineProgress) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// Start implements Progress.
func (p *lineProgress) Start(name string, total int64) Tracker {
	t := &lineTracker{p: p, name: name, total: total, start: p.now()}
	t.last = t.start
	if total >= 0 {
		p.printf("fetch %s: started, %s", name, humanBytes(total))
	} else {
		p.printf("fetch %s: started, size unknown", name)
	}
	return t
}

// waitingText is what a download that waits for another one of the same
// artifact prints.
const waitingText = "waiting: another run (or request) is downloading the same artifact into this cache"

// Waiting implements Waiter.
func (p *lineProgress) Waiting(name string) {
	p.printf("fetch %s: %s", name, waitingText)
}

type lineTracker struct {
	p           *lineProgress
	name        string
	total, n    int64
	start, last time.Time
	quarter     int64
}

// Advance implements Tracker.
func (t *lineTracker) Advance(n int64) {
	t.n += n
	now := t.p.now()
	report := now.Sub(t.last) >= t.p.interval
	if t.total > 0 {
		if q := t.n * 4 / t.total; q > t.quarter {
			t.quarter = q
			report = report || q < 4
		}
	}
	if !report {
		return
	}
	t.last = now
	if t.total > 0 {
		t.p.printf("fetch %s: %s of %s (%d%%)", t.name, humanBytes(t.n), humanBytes(t.total), t.n*100/t.total)
	} else {
		t.p.printf("fetch %s: %s", t.name, humanBytes(t.n))
	}
}

// Done implements Tracker.
func (t *lineTracker) Done(err error) {
	d := t.p.now().Sub(t.start)
	if err != nil {
		t.p.printf("fetch %s: failed after %s: %v", t.name, humanBytes(t.n), err)
		return
	}
	t.p.printf("fetch %s: done, %s in %s (%s)", t.name, humanBytes(t.n), d.Round(time.Millisecond), rate(t.n, d))
}

// barProgress draws one line per active download and redraws the block in
// place; finished downloads leave a final line above it.
type barProgress struct {
	mu        sync.Mutex
	w         io.Writer
	now       func() time.Time
	minRedraw time.Duration
	active    []*bar
	drawn     int // lines of the active block currently on screen
	lastDraw  time.Time
}

type bar struct {
	p        *barProgress
	name     string
	total, n int64
	start    time.Time
}

// Start implements Progress.
func (p *barProgress) Start(name string, total int64) Tracker {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := &bar{p: p, name: name, total: total, start: p.now()}
	p.active = append(p.active, b)
	p.redraw(nil)
	return b
}

// Waiting implements Waiter: a line above the active block.
func (p *barProgress) Waiting(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redraw([]string{name + " " + waitingText})
}

// Advance implements Tracker.
func (b *bar) Advance(n int64) {
	p := b.p
	p.mu.Lock()
	defer p.mu.Unlock()
	b.n += n
	if p.now().Sub(p.lastDraw) >= p.minRedraw {
		p.redraw(nil)
	}
}

// Done implements Tracker.
func (b *bar) Done(err error) {
	p := b.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, a := range p.active {
		if a == b {
			p.active = append(p.active[:i], p.active[i+1:]...)
			break
		}
	}
	d := p.now().Sub(b.start)
	var final string
	if err != nil {
		final = fmt.Sprintf("%s failed after %s: %v", b.name, humanBytes(b.n), err)
	} else {
		final = fmt.Sprintf("%s %s in %s (%s)", b.name, humanBytes(b.n), d.Round(time.Millisecond), rate(b.n, d))
	}
	p.redraw([]string{final})
}

// redraw rewrites the active block, printing final lines above it. Callers
// hold p.mu.
func (p *barProgress) redraw(final []string) {
	var buf bytes.Buffer
	if p.drawn > 0 {
		// Back to the first line of the block, clear to end of screen.
		fmt.Fprintf(&buf, "\x1b[%dF\x1b[J", p.drawn)
	} else {
		buf.WriteString("\r\x1b[J")
	}
	for _, l := range final {
		buf.WriteString(l)
		buf.WriteByte('\n')
	}
	now := p.now()
	for _, b := range p.active {
		buf.WriteString(b.line(now))
		buf.WriteByte('\n')
	}
	p.drawn = len(p.active)
	p.lastDraw = now
	p.w.Write(buf.Bytes())
}

// line renders one bar: name, bar, percent, bytes, rate.
func (b *bar) line(now time.Time) string {
	const width = 24
	name := b.name
	if len(name) > 32 {
		name = "…" + name[len(name)-31:]
	}
	elapsed := now.Sub(b.start)
	if b.total <= 0 {
		return fmt.Sprintf("%-32s %s %s", name, humanBytes(b.n), rate(b.n, elapsed))
	}
	frac := float64(b.n) / float64(b.total)
	if frac > 1 {
		frac = 1
	}
	fill := int(frac * width)
	bar := strings.Repeat("=", fill)
	if fill < width {
		bar += ">" + strings.Repeat(" ", width-fill-1)
	}
	return fmt.Sprintf("%-32s [%s] %3d%% %s/%s %s", name, bar, int(frac*100),
		humanBytes(b.n), humanBytes(b.total), rate(b.n, elapsed))
}
