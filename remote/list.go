package remote

import (
	"context"
	"fmt"
	"slices"

	"golang.org/x/sync/errgroup"
)

// stableOrder is the listing order ListAll asks for when the caller names
// none: a file's creation time never changes while it lives, so files keep
// their places relative to each other; only additions and deletions move
// them. (The contract names created_at as an order_by field; the service is
// assumed to break ties the same way on every page, as the emulator does by
// creation sequence and file id.)
const stableOrder = "asc:created_at"

// ListAll lists every file that matches o, however many, as one snapshot in
// which no file that lived throughout the sweep is missing. o.Limit and
// o.Offset are ignored; an empty o.OrderBy becomes "asc:created_at".
//
// The listing is paged by offset, and pages fetched at different moments
// shift when other clients add or delete files in between: a deletion
// before a page's offset moves the files behind it one place forward, and
// the file that crosses the page boundary is in neither page. Ordering by
// a stable key does not stop that (deletions still shift offsets); it only
// makes the shift the one thing that can happen. So the sweep is checked,
// not trusted:
//
//   - Pages overlap: after the first page (which tells the page size and
//     the total), the others are fetched concurrently (at most
//     Config.ListConcurrency at once) at a stride of a page less a tenth,
//     so neighbours share files when nothing moved.
//   - Each page is a contiguous window of the ordered listing as it was
//     when fetched. Two windows that share a file cover, between them,
//     every file that lived at both moments and lies between their ends
//     (the order of files does not change). So if a chain of pages linked
//     by shared file ids leads from a page at offset 0 to a page that
//     reached the end of the listing (offset+count >= total), every file
//     that lived throughout the sweep is in some page of the chain. The
//     check needs only file ids, not the service's collation of the key.
//   - When no such chain exists (a gap opened where more files than the
//     overlap were deleted ahead of a page between the fetches), the sweep
//     is repaired by walking on from the furthest page linked to offset 0:
//     the next page is asked for an overlap before where that page's last
//     file should be now, stepping back (half a page, doubling) when it
//     shares nothing with it (its files moved further forward, or were
//     deleted), and from the measured shift when it does. Pages already fetched
//     beyond the gap join the chain as soon as a new page links to them,
//     so a gap usually costs one call. Files added during the sweep may be
//     missed (they are not in the snapshot), but they cannot hide others:
//     they only move later files back, towards more overlap.
//   - The repair is bounded (twice the pages, plus 8). A sweep that still
//     has no chain returns the union of every page with a warning: a union
//     never hides a file seen live in this sweep; at worst it shows one
//     deleted during it until the next sweep, which is the safe direction.
//
// The result is every file of every page of the sweep, kept once by file
// id (the entry modified last). A 12,001-file workspace costs 3 list calls
// when nothing moves (pages at 0, 4500, 9000).
func (c *Client) ListAll(ctx context.Context, o ListOptions) ([]ListFile, error) {
	if o.OrderBy == "" {
		o.OrderBy = stableOrder
	}
	fetch := func(ctx context.Context, offset, limit int) (*ListFilesResponse, error) {
		po := o
		po.Offset, po.Limit = offset, limit
		return c.ListFiles(ctx, po)
	}
	files, st, err := sweepAll(ctx, fetch, c.listN)
	if err != nil {
		return nil, err
	}
	if !st.Consistent {
		c.log.Warn("listing pages kept shifting under concurrent changes; using every file seen",
			"calls", st.Calls, "files", len(files))
	} else if st.Repairs > 0 {
		c.log.Debug("listing pages shifted under concurrent changes; repaired",
			"calls", st.Calls, "repairs", st.Repairs, "files", len(files))
	}
	return files, nil
}

// pager fetches the page of a listing at offset.
type pager func(ctx context.Context, offset, limit int) (*ListFilesResponse, error)

// sweepStats says what a sweep cost and whether it was proven complete.
type sweepStats struct {
	Calls      int  // list calls
	Repairs    int  // of which made to close gaps
	Consistent bool // a chain of linked pages covers the listing
}

// page is one window of the listing as fetched.
type page struct {
	offset int
	files  []ListFile
	end    bool // the listing ended within it when it was fetched
}

func newPage(offset, limit int, r *ListFilesResponse) *page {
	n := len(r.Files)
	return &page{offset: offset, files: r.Files, end: n < limit || offset+n >= r.Total}
}

// overlapFor is how many files neighbouring pages share when nothing moves.
func overlapFor(limit int) int {
	if limit < 2 {
		return 0
	}
	return min(max(limit/10, 1), limit-1)
}

// sweepAll runs one checked sweep (see ListAll) with fetch, n pages at once.
func sweepAll(ctx context.Context, fetch pager, n int) ([]ListFile, sweepStats, error) {
	var st sweepStats
	first, err := fetch(ctx, 0, MaxListLimit)
	if err != nil {
		return nil, st, err
	}
	st.Calls++
	limit := first.Limit
	if limit <= 0 || limit > MaxListLimit {
		limit = MaxListLimit
	}
	pages := []*page{newPage(0, limit, first)}
	if pages[0].end {
		st.Consistent = true
		return dedupe(first.Files), st, nil
	}
	overlap := overlapFor(limit)
	stride := limit - overlap
	var offsets []int
	for off := stride; off-stride+limit < first.Total; off += stride {
		offsets = append(offsets, off)
	}
	rest := make([]*page, len(offsets))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(n, 1))
	for i, off := range offsets {
		g.Go(func() error {
			r, err := fetch(gctx, off, limit)
			if err != nil {
				return fmt.Errorf("list page %d of %d: %w", i+2, len(offsets)+1, err)
			}
			rest[i] = newPage(off, limit, r)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, st, err
	}
	st.Calls += len(offsets)
	pages = append(pages, rest...)

	front, back := furthestLinked(pages), 0
	budget := 2*len(pages) + 8
	for !covered(pages) {
		if st.Repairs == budget {
			return union(pages), st, nil
		}
		off := max(0, front.offset+len(front.files)-overlap-back)
		r, err := fetch(ctx, off, limit)
		if err != nil {
			return nil, st, fmt.Errorf("list page at %d (repairing a shifted sweep): %w", off, err)
		}
		st.Calls++
		st.Repairs++
		p := newPage(off, limit, r)
		pages = append(pages, p)
		front, back = nextStep(front, p, back, limit, overlap)
	}
	st.Consistent = true
	return union(pages), st, nil
}

// nextStep decides where the repair walk goes after fetching p from the
// front page: on from p if p reaches past front; back from front by the
// shift measured on a file they share; further back if they share none;
// from p afresh if p is a new first page. Stepping back doubles, so it
// overtakes files that keep moving forward.
func nextStep(front, p *page, back, limit, overlap int) (*page, int) {
	at := make(map[string]int, len(front.files))
	for i, f := range front.files {
		at[f.FileID] = i
	}
	for q, f := range p.files {
		i, ok := at[f.FileID]
		if !ok {
			continue
		}
		if _, inFront := at[p.files[len(p.files)-1].FileID]; !inFront {
			return p, 0
		}
		return front, front.offset + i - (p.offset + q)
	}
	if p.offset == 0 {
		return p, 0
	}
	return front, 2*back + max(limit/2, overlap+1)
}

// covered reports whether some chain of pages, each sharing a file with
// the next, leads from a page at offset 0 to a page that reached the end.
func covered(pages []*page) bool {
	parent := make([]int, len(pages))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	owner := map[string]int{}
	for i, p := range pages {
		for _, f := range p.files {
			if j, ok := owner[f.FileID]; ok {
				parent[find(i)] = find(j)
			} else {
				owner[f.FileID] = i
			}
		}
	}
	starts := map[int]bool{}
	for i, p := range pages {
		if p.offset == 0 {
			starts[find(i)] = true
		}
	}
	for i, p := range pages {
		if p.end && starts[find(i)] {
			return true
		}
	}
	return false
}

// furthestLinked is the page linked to the first one (through shared
// files) that was asked for the furthest offset.
func furthestLinked(pages []*page) *page {
	ids := map[string]bool{}
	in := make([]bool, len(pages))
	in[0] = true
	for _, f := range pages[0].files {
		ids[f.FileID] = true
	}
	front := pages[0]
	for grew := true; grew; {
		grew = false
		for i, p := range pages {
			if in[i] || !slices.ContainsFunc(p.files, func(f ListFile) bool { return ids[f.FileID] }) {
				continue
			}
			in[i], grew = true, true
			for _, f := range p.files {
				ids[f.FileID] = true
			}
			if p.offset+len(p.files) > front.offset+len(front.files) {
				front = p
			}
		}
	}
	return front
}

// union is every file of every page, once each.
func union(pages []*page) []ListFile {
	var all []ListFile
	for _, p := range pages {
		all = append(all, p.files...)
	}
	return dedupe(all)
}

// dedupe keeps one entry per file id, the one modified last, in the order
// of first appearance.
func dedupe(files []ListFile) []ListFile {
	at := make(map[string]int, len(files))
	out := files[:0:0]
	for _, f := range files {
		if i, ok := at[f.FileID]; ok {
			if f.ModifiedAt.After(out[i].ModifiedAt) {
				out[i] = f
			}
			continue
		}
		at[f.FileID] = len(out)
		out = append(out, f)
	}
	return out
}
