package main

import (
	"slices"
)

// Lower bounds for fetching whole files over p connections of equal rate:
// a file goes over one connection, so no schedule beats the best packing of
// the sizes into p bins (the largest bin is the makespan).

// bestMakespan is the smallest possible largest bin when sizes are packed
// into p bins (exact branch and bound; the benchmark has about 8 files).
func bestMakespan(sizes []int64, p int) int64 {
	s := slices.Clone(sizes)
	slices.Sort(s)
	slices.Reverse(s)
	if p <= 0 || len(s) == 0 {
		return 0
	}
	best := inOrderMakespan(s, p) // largest-first greedy: a good start
	bins := make([]int64, p)
	var dfs func(i int, cur int64)
	dfs = func(i int, cur int64) {
		if cur >= best {
			return
		}
		if i == len(s) {
			best = cur
			return
		}
		seen := map[int64]bool{}
		for b := range bins {
			if seen[bins[b]] { // bins with equal loads are interchangeable
				continue
			}
			seen[bins[b]] = true
			bins[b] += s[i]
			dfs(i+1, max(cur, bins[b]))
			bins[b] -= s[i]
		}
	}
	dfs(0, 0)
	return best
}

// inOrderMakespan is the makespan when files start in the given order, each
// on the first connection to become free.
func inOrderMakespan(sizes []int64, p int) int64 {
	if p <= 0 {
		return 0
	}
	bins := make([]int64, p)
	for _, n := range sizes {
		i := 0
		for j := range bins {
			if bins[j] < bins[i] {
				i = j
			}
		}
		bins[i] += n
	}
	return slices.Max(bins)
}
