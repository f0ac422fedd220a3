package textdiff

import "slices"

// This file finds a shortest edit script with Myers' O(ND) algorithm in its
// linear-space form ("An O(ND) Difference Algorithm and Its Variations",
// 1986, section 4b): searches from both corners meet in the middle of a
// shortest path, which splits the problem into two halves of half the cost.
//
// Coordinates: x indexes a, y indexes b, and diagonal k holds the points
// with x-y == k. The backward search is the same search over the reversed
// sequences, where diagonal r corresponds to the forward diagonal delta-r
// (delta = len(a)-len(b)) and its reach u to x = len(a)-u.
//
// The cost is O((N+M)·D) time and O(N+M) space. Two limits keep huge edit
// distances from taking quadratic time: a search that needs more than
// costLimit edits from each end settles for the point that got furthest
// (the script is then no longer minimal), and once the total work exceeds
// the budget the remaining regions are replaced wholesale.

const (
	// minBudget and budgetPerLine set the total work allowed, counted in
	// diagonals visited plus lines compared (roughly 10ns each).
	minBudget     = 1 << 24
	budgetPerLine = 1 << 9

	// costLimit is the number of edits searched from each end of one
	// region before splitting it heuristically.
	costLimit = 1024
)

// defaultBudget returns the work budget for inputs of n and m lines.
func defaultBudget(n, m int) int {
	return max(minBudget, budgetPerLine*(n+m))
}

// diffLines returns, for each line of a, whether it is deleted and, for each
// line of b, whether it is inserted. The unmarked lines of a and b are equal
// pairwise and in order. The script is minimal unless the edit distance is
// too large to search exhaustively (see costLimit and defaultBudget).
func diffLines(a, b []string, budget int) (del, ins []bool) {
	del = make([]bool, len(a))
	ins = make([]bool, len(b))

	// Intern lines so the search compares integers.
	ids := make(map[string]int32, len(a)+len(b))
	intern := func(lines []string) []int32 {
		out := make([]int32, len(lines))
		for i, l := range lines {
			id, ok := ids[l]
			if !ok {
				id = int32(len(ids))
				ids[l] = id
			}
			out[i] = id
		}
		return out
	}
	ia, ib := intern(a), intern(b)
	inA := make([]bool, len(ids))
	inB := make([]bool, len(ids))
	for _, id := range ia {
		inA[id] = true
	}
	for _, id := range ib {
		inB[id] = true
	}

	// A line with no equal on the other side is in no common subsequence:
	// mark it changed now and search only among the others. This keeps
	// the longest common subsequence, so the script stays minimal, and it
	// makes unrelated regions cheap.
	fa, mapA := keep(ia, inB, del)
	fb, mapB := keep(ib, inA, ins)

	ra, rb := slices.Clone(fa), slices.Clone(fb)
	slices.Reverse(ra)
	slices.Reverse(rb)
	d := &differ{
		a: fa, b: fb,
		ra: ra, rb: rb,
		mapA: mapA, mapB: mapB,
		del: del, ins: ins,
		fw:     make([]int, len(fa)+len(fb)+3),
		bw:     make([]int, len(fa)+len(fb)+3),
		budget: budget,
	}
	d.compare(0, len(fa), 0, len(fb))
	return del, ins
}

// keep returns the ids found in other with their original indexes, and
// marks the rest as changed.
func keep(ids []int32, other, changed []bool) (kept []int32, index []int) {
	kept = make([]int32, 0, len(ids))
	index = make([]int, 0, len(ids))
	for i, id := range ids {
		if other[id] {
			kept = append(kept, id)
			index = append(index, i)
		} else {
			changed[i] = true
		}
	}
	return kept, index
}

// differ holds the state of one search.
type differ struct {
	a, b       []int32 // the interned lines being compared
	ra, rb     []int32 // a and b reversed, for the backward search
	mapA, mapB []int   // index in a (b) -> index in the caller's lines
	del, ins   []bool  // the caller's marks
	fw, bw     []int   // furthest reach per diagonal, forward and backward
	work       int     // work done so far
	budget     int
}

// compare marks an edit script between a[aLo:aHi] and b[bLo:bHi].
func (d *differ) compare(aLo, aHi, bLo, bHi int) {
	for {
		for aLo < aHi && bLo < bHi && d.a[aLo] == d.b[bLo] {
			aLo++
			bLo++
		}
		for aLo < aHi && bLo < bHi && d.a[aHi-1] == d.b[bHi-1] {
			aHi--
			bHi--
		}
		if aLo == aHi || bLo == bHi || d.work > d.budget {
			d.replace(aLo, aHi, bLo, bHi)
			return
		}
		x, y, ok := d.split(aLo, aHi, bLo, bHi)
		if !ok {
			d.replace(aLo, aHi, bLo, bHi)
			return
		}
		d.compare(aLo, x, bLo, y)
		aLo, bLo = x, y // and loop instead of recursing on the second half
	}
}

// replace marks a[aLo:aHi] deleted and b[bLo:bHi] inserted.
func (d *differ) replace(aLo, aHi, bLo, bHi int) {
	for _, i := range d.mapA[aLo:aHi] {
		d.del[i] = true
	}
	for _, j := range d.mapB[bLo:bHi] {
		d.ins[j] = true
	}
}

// split returns a point (x, y) strictly between (aLo, bLo) and (aHi, bHi)
// through which an edit path passes. Normally that path is a shortest one
// and the point halves its cost, so both halves are cheaper than the whole.
// The regions must be non-empty and differ in their first and in their last
// lines: the total cost is then at least 2. It reports false if no useful
// point was found within the limits.
func (d *differ) split(aLo, aHi, bLo, bHi int) (x, y int, ok bool) {
	a, b := d.a[aLo:aHi], d.b[bLo:bHi]
	ra, rb := d.ra[len(d.a)-aHi:len(d.a)-aLo], d.rb[len(d.b)-bHi:len(d.b)-bLo]
	n, m := len(a), len(b)
	// A path of cost D ends on diagonal delta only if D ≡ delta (mod 2):
	// an odd total meets during a forward step, an even one backward.
	odd := (n-m)&1 != 0
	off := m + 1
	for c := 0; ; c++ {
		wc := -1
		if odd {
			wc = c - 1
		}
		k, x, met, work := advance(a, b, d.fw, d.bw, off, c, wc)
		d.work += work
		if met {
			return aLo + x, bLo + x - k, true
		}

		wc = -1
		if !odd {
			wc = c
		}
		r, u, met, work := advance(ra, rb, d.bw, d.fw, off, c, wc)
		d.work += work
		if met {
			return aHi - u, bHi - (u - r), true
		}

		if c >= costLimit || d.work > d.budget {
			return d.furthest(aLo, aHi, bLo, bHi, c)
		}
	}
}

// furthest gives up on a shortest path after c edits from each end of the
// region and returns the point either search got furthest to.
func (d *differ) furthest(aLo, aHi, bLo, bHi, c int) (x, y int, ok bool) {
	n, m := aHi-aLo, bHi-bLo
	off := m + 1
	lo, hi := diagonals(c, n, m)
	fk, bk := lo, lo
	for k := lo; k <= hi; k += 2 {
		// Progress along the diagonal is x+y = 2x-k.
		if 2*d.fw[off+k]-k > 2*d.fw[off+fk]-fk {
			fk = k
		}
		if 2*d.bw[off+k]-k > 2*d.bw[off+bk]-bk {
			bk = k
		}
	}
	if fx, bu := d.fw[off+fk], d.bw[off+bk]; 2*fx-fk >= 2*bu-bk {
		x, y = aLo+fx, bLo+fx-fk
	} else {
		x, y = aHi-bu, bHi-(bu-bk)
	}
	ok = (x > aLo || y > bLo) && (x < aHi || y < bHi)
	return x, y, ok
}

// advance extends one direction of the search to c edits. a and b are the
// sequences as that direction sees them. On entry v[off+k] holds the
// furthest x on diagonal k reachable with at most c-1 edits; on return, with
// at most c. Cost from the start never decreases along a diagonal, so every
// point of a diagonal up to its furthest reach is within c edits as well;
// and as the sequences differ in their first elements, a diagonal's reach
// after c-2 edits is never beyond the steps from its neighbours, so it needs
// no carrying over.
//
// If wc >= 0, w holds the other direction's reach with wc edits, and advance
// stops at the first diagonal k where the two overlap, returning met with
// the reach x on k. work counts the diagonals visited and lines compared.
func advance(a, b []int32, v, w []int, off, c, wc int) (k, x int, met bool, work int) {
	n, m := len(a), len(b)
	delta := n - m
	lo, hi := diagonals(c, n, m)
	for k := lo; k <= hi; k += 2 {
		x := 0
		if k > -c && k > -m {
			// One step right from diagonal k-1, from the furthest
			// point there that is not in the last column.
			x = min(v[off+k-1]+1, n)
		}
		if k < c && k < n {
			// One step down from diagonal k+1, from the furthest
			// point there that is not in the last row.
			x = max(x, min(v[off+k+1], m+k))
		}
		y := x - k
		x0 := x
		for x < n && y < m && a[x] == b[y] {
			x++
			y++
		}
		work += 1 + x - x0
		v[off+k] = x
		if r := delta - k; wc >= 0 && -wc <= r && r <= wc && x+w[off+r] >= n {
			return k, x, true, work
		}
	}
	return 0, 0, false, work
}

// diagonals returns the first and last diagonal a path of c edits can end on
// inside an n×m grid; the diagonals in between are every other one.
func diagonals(c, n, m int) (lo, hi int) {
	lo, hi = -c, c
	if lo < -m {
		lo = -m + (c-m)&1
	}
	if hi > n {
		hi = n - (c-n)&1
	}
	return lo, hi
}
