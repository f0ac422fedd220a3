package fetch

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
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

// Finisher is an optional interface of a Progress that draws from
// goroutines of its own (the terminal bars). Wait draws the final state of
// every download and stops drawing; call it when the downloads of a run
// are over, before printing the run's last lines. Wait returns at once when
// nothing was drawn, may be called more than once, and a download started
// after it is drawn again.
type Finisher interface {
	Wait()
}

// NewBarProgress returns a live bar per download for a terminal that is
// width columns wide (0: unknown, lines are barLineWidth wide), drawn with
// github.com/vbauerster/mpb: name, bar, percentage, bytes, speed; a
// finished or failed download leaves its final line. The result is a
// Finisher.
func NewBarProgress(w io.Writer, width int) Progress {
	if width <= 0 {
		width = barLineWidth
	}
	return &barProgress{w: w, width: width}
}

// NewLineProgress returns plain periodic lines per download (every 5s or
// every 25%), suitable for logs (cloud-init's, the journal).
func NewLineProgress(w io.Writer) Progress {
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

// Terminal mode: github.com/vbauerster/mpb draws the bars from its own
// goroutines, redrawing the block of running downloads in place every
// barRefresh; a finished (or failed) download's last line is popped above
// the block and stays there.
const (
	barRefresh = 120 * time.Millisecond
	// barWidth is the width of the [===>---] part of a line.
	barWidth = 24
	// barLineWidth is the width of a line when the terminal's size is not
	// known; lines are as wide as the terminal (decorators are cut short
	// rather than wrapped).
	barLineWidth = 100
	// barNameWidth caps the name column: longer names keep their end.
	barNameWidth = 32
)

// errUnfinished is what a download's line says when the progress was
// finished (Wait) before the download reported its end.
var errUnfinished = errors.New("progress ended before the download did")

// barProgress draws one bar per download attempt with mpb. The mpb
// container is created when the first line is drawn, and finished (its
// last frame flushed, its goroutines stopped) as soon as no download runs
// any more: mpb moves the cursor back over its block at its next frame,
// which would overdraw whatever the caller prints in between (the report
// of the stage that downloaded). A later download starts a new container.
// Nothing is printed until a download starts (or Waiting is called).
type barProgress struct {
	w     io.Writer
	width int // columns

	mu     sync.Mutex // serialises container creation, bar creation and finish
	c      *mpb.Progress
	active map[*bar]struct{} // attempts of c that have not reported Done
}

// bar is one attempt's Tracker.
type bar struct {
	p       *barProgress
	c       *mpb.Progress
	b       *mpb.Bar
	start   time.Time
	outcome atomic.Pointer[barOutcome] // set once, by Done or by finish
}

type barOutcome struct {
	err     error
	elapsed time.Duration
}

// Start implements Progress.
func (p *barProgress) Start(name string, total int64) Tracker {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := &bar{p: p, start: time.Now()}
	filler := mpb.BarStyle().Build()
	if total < 0 {
		filler = unknownSizeFiller()
	}
	c := p.containerLocked()
	// Created with no total, so that the bar completes only when Done
	// says so (a failure after the last byte must still show as one);
	// SetTotal(total, false) shows the expected size without arming
	// completion.
	b, err := c.Add(0, filler, mpb.BarWidth(barWidth),
		mpb.PrependDecorators(decor.Name(shortName(name), decor.WCSyncWidthR)),
		mpb.AppendDecorators(percentDecorator(), countersDecorator(), t.tailDecorator()))
	if err != nil {
		// The container stopped on its own: writing to the output failed.
		p.finishLocked()
		return silentTracker{}
	}
	if total >= 0 {
		b.SetTotal(total, false)
	}
	t.c, t.b = c, b
	p.active[t] = struct{}{}
	return t
}

// Waiting implements Waiter: a line of its own, above the running bars.
func (p *barProgress) Waiting(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.containerLocked()
	b, err := c.Add(0, mpb.NopStyle().Build(), mpb.BarFillerTrim(),
		mpb.PrependDecorators(decor.Name(name+" "+waitingText)))
	if err != nil {
		p.finishLocked()
		return
	}
	// Completing the bar at once pops its line above the block for good.
	b.SetTotal(-1, true)
	if len(p.active) == 0 {
		p.finishLocked()
	}
}

// Wait implements Finisher: it ends any attempt that has not reported Done
// (its line says so), draws the final frame and stops mpb's goroutines.
func (p *barProgress) Wait() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finishLocked()
}

// containerLocked returns the current mpb container, creating it when
// needed. Callers hold p.mu.
func (p *barProgress) containerLocked() *mpb.Progress {
	if p.c == nil {
		p.c = mpb.New(
			// mpb asks an *os.File for its size itself, and draws nothing
			// on a terminal that reports none (a pty of script(1), some
			// consoles): the width comes from NewBarProgress's caller, and
			// mpb sees a plain writer that it is told is a terminal.
			mpb.WithOutput(struct{ io.Writer }{p.w}),
			mpb.ForceTTY(),
			mpb.WithAutoRefresh(),
			mpb.WithWidth(p.width),
			mpb.WithRefreshRate(barRefresh),
			mpb.PopCompletedMode(),
		)
		p.active = make(map[*bar]struct{})
	}
	return p.c
}

// finishLocked aborts the attempts still running, waits for the
// container's final frame and drops the container. Callers hold p.mu; no
// bar can be added meanwhile, so the container is never used after its
// Wait.
func (p *barProgress) finishLocked() {
	if p.c == nil {
		return
	}
	for t := range p.active {
		if t.outcome.CompareAndSwap(nil, &barOutcome{err: errUnfinished, elapsed: time.Since(t.start)}) {
			t.b.Abort(false)
		}
	}
	p.c.Wait()
	p.c, p.active = nil, nil
}

// Advance implements Tracker. mpb's bars are safe for concurrent use.
func (t *bar) Advance(n int64) { t.b.IncrInt64(n) }

// Done implements Tracker: a success completes the bar at the bytes
// received, a failure aborts it; either way its line stays. The last
// running attempt's Done returns once that line is on the output.
func (t *bar) Done(err error) {
	if !t.outcome.CompareAndSwap(nil, &barOutcome{err: err, elapsed: time.Since(t.start)}) {
		return // already ended by Wait
	}
	if err != nil {
		t.b.Abort(false)
	} else {
		t.b.SetTotal(-1, true)
	}
	p := t.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c != t.c {
		return
	}
	delete(p.active, t)
	if len(p.active) == 0 {
		p.finishLocked()
	}
}

// silentTracker follows an attempt that cannot be drawn.
type silentTracker struct{}

func (silentTracker) Advance(int64) {}
func (silentTracker) Done(error)    {}

// shortName keeps the end of a long name, where file names differ.
func shortName(name string) string {
	r := []rune(name)
	if len(r) <= barNameWidth {
		return name
	}
	return "…" + string(r[len(r)-barNameWidth+1:])
}

// unknownSizeFiller spins while a download of unknown size runs and shows
// a plain bar once it has ended.
func unknownSizeFiller() mpb.BarFiller {
	spin, plain := mpb.SpinnerStyle().Build(), mpb.BarStyle().Build()
	return mpb.BarFillerFunc(func(w io.Writer, s decor.Statistics) error {
		if s.Completed || s.Aborted {
			return plain.Fill(w, s)
		}
		return spin.Fill(w, s)
	})
}

// percentDecorator shows mpb's percentage when the size is known.
func percentDecorator() decor.Decorator {
	pct := decor.Percentage()
	return decor.Any(func(s decor.Statistics) string {
		if s.Total <= 0 {
			return ""
		}
		str, _ := pct.Decor(s)
		return str
	}, decor.WCSyncWidth)
}

// countersDecorator shows bytes received of the total, in binary units,
// or only the bytes received when the size is unknown.
func countersDecorator() decor.Decorator {
	pair := decor.CountersKibiByte("% .1f / % .1f")
	return decor.Any(func(s decor.Statistics) string {
		if s.Total <= 0 {
			return fmt.Sprintf("% .1f", decor.SizeB1024(s.Current))
		}
		str, _ := pair.Decor(s)
		return str
	}, decor.WCSyncSpace)
}

// tailDecorator shows the average speed while the download runs, then the
// outcome: the speed and duration of a success, or the error.
func (t *bar) tailDecorator() decor.Decorator {
	speed := decor.AverageSpeed(decor.SizeB1024(0), "% .1f")
	return decor.Any(func(s decor.Statistics) string {
		o := t.outcome.Load()
		if o == nil || !(s.Completed || s.Aborted) {
			str, _ := speed.Decor(s)
			return str
		}
		d := o.elapsed.Round(time.Millisecond)
		if o.err != nil {
			// A line break would break mpb's line accounting.
			msg := strings.NewReplacer("\n", " ", "\r", " ").Replace(o.err.Error())
			return fmt.Sprintf("failed after %s: %s", d, msg)
		}
		var bps float64
		if o.elapsed > 0 {
			bps = float64(s.Current) / o.elapsed.Seconds()
		}
		return fmt.Sprintf("% .1f in %s", decor.FmtAsSpeed(decor.SizeB1024(int64(bps))), d)
	}, decor.WC{C: decor.DextraSpace})
}
