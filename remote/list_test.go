package remote

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeListing is an ordered listing that other clients change between page
// requests: before each call after the first, change runs with the call's
// number.
type fakeListing struct {
	mu      sync.Mutex
	files   []ListFile // the listing's order
	next    int        // the next new file's number
	calls   int
	maxPage int
	gone    map[string]bool // deleted at some point of the sweep
	ever    map[string]bool // existed at some point
	served  map[string]bool // on some page served
	change  func(l *fakeListing, call int)
}

func newFakeListing(n, maxPage int, change func(l *fakeListing, call int)) *fakeListing {
	l := &fakeListing{maxPage: maxPage, gone: map[string]bool{}, ever: map[string]bool{}, served: map[string]bool{}, change: change}
	l.add(n)
	return l
}

// add appends n new files (created now: at the end of the order).
func (l *fakeListing) add(n int) {
	for range n {
		id := fmt.Sprintf("f%06d", l.next)
		l.next++
		l.files = append(l.files, ListFile{FileID: id, Name: id, Path: "/"})
		l.ever[id] = true
	}
}

// del deletes the files at positions [at, at+n) (clamped).
func (l *fakeListing) del(at, n int) {
	at = min(at, len(l.files))
	n = min(n, len(l.files)-at)
	for _, f := range l.files[at : at+n] {
		l.gone[f.FileID] = true
	}
	l.files = slices.Delete(l.files, at, at+n)
}

func (l *fakeListing) fetch(_ context.Context, offset, limit int) (*ListFilesResponse, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls > 0 && l.change != nil {
		l.change(l, l.calls)
	}
	l.calls++
	limit = min(limit, l.maxPage)
	lo := min(offset, len(l.files))
	hi := min(lo+limit, len(l.files))
	for _, f := range l.files[lo:hi] {
		l.served[f.FileID] = true
	}
	return &ListFilesResponse{Count: hi - lo, Total: len(l.files), Offset: offset, Limit: limit,
		Files: slices.Clone(l.files[lo:hi])}, nil
}

// TestSweepRepairsShiftedPages: however other clients delete and add files
// between page requests, a sweep misses no file that lived throughout it,
// and invents none.
func TestSweepRepairsShiftedPages(t *testing.T) {
	cases := []struct {
		name       string
		files      int
		page       int
		change     func(l *fakeListing, call int)
		calls      int // exact list calls; 0: not checked
		consistent bool
	}{
		{name: "nothing moves", files: 12001, page: 5000, calls: 3, consistent: true},
		{name: "one file", files: 1, page: 5000, calls: 1, consistent: true},
		{name: "empty", files: 0, page: 5000, calls: 1, consistent: true},
		{name: "exactly one page", files: 100, page: 100, calls: 1, consistent: true},
		{name: "deletions within the overlap", files: 1000, page: 100, consistent: true, calls: 11,
			change: func(l *fakeListing, call int) { l.del(call, 5) }},
		{name: "deletions past the overlap before every page", files: 1000, page: 100, consistent: true,
			change: func(l *fakeListing, call int) { l.del(0, 25) }},
		{name: "a folder of 300 deleted mid-sweep", files: 2000, page: 100, consistent: true,
			change: func(l *fakeListing, call int) {
				if call == 5 {
					l.del(100, 300)
				}
			}},
		{name: "files added at the end", files: 1000, page: 100, consistent: true,
			change: func(l *fakeListing, call int) { l.add(30) }},
		{name: "random deletions and additions", files: 3000, page: 100, consistent: true,
			change: func(l *fakeListing, call int) {
				r := rand.New(rand.NewPCG(uint64(call), 15))
				for range 3 {
					l.del(r.IntN(len(l.files)+1), r.IntN(12))
				}
				l.add(r.IntN(8))
			}},
		{name: "deleting faster than pages can follow", files: 5000, page: 100, consistent: false,
			change: func(l *fakeListing, call int) { l.del(0, 1000); l.add(1000) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newFakeListing(tc.files, tc.page, tc.change)
			live := map[string]bool{}
			for _, f := range l.files {
				live[f.FileID] = true
			}
			got, st, err := sweepAll(context.Background(), l.fetch, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d files, %d left, %d calls (%d repairs), consistent %v", tc.files, len(l.files), st.Calls, st.Repairs, st.Consistent)
			seen := map[string]bool{}
			for _, f := range got {
				if seen[f.FileID] {
					t.Fatalf("%s listed twice", f.FileID)
				}
				if !l.ever[f.FileID] {
					t.Fatalf("%s was never a file", f.FileID)
				}
				seen[f.FileID] = true
			}
			missed := 0
			for id := range live {
				if !l.gone[id] && !seen[id] {
					missed++
				}
			}
			for id := range l.served {
				if !seen[id] {
					t.Fatalf("%s was on a page but is not in the result", id)
				}
			}
			if tc.consistent && missed > 0 {
				t.Errorf("missed %d files that were never deleted", missed)
			}
			if st.Consistent != tc.consistent {
				t.Errorf("consistent %v, want %v", st.Consistent, tc.consistent)
			}
			if st.Calls != l.calls {
				t.Errorf("stats say %d calls, the listing saw %d", st.Calls, l.calls)
			}
			if tc.calls > 0 && st.Calls != tc.calls {
				t.Errorf("%d calls, want %d", st.Calls, tc.calls)
			}
		})
	}
}

// TestSweepConcurrentPages: the same guarantee with pages fetched four at
// once, in whatever order they are answered.
func TestSweepConcurrentPages(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 15))
		var rmu sync.Mutex
		l := newFakeListing(2000, 100, func(l *fakeListing, call int) {
			rmu.Lock()
			defer rmu.Unlock()
			l.del(r.IntN(len(l.files)+1), r.IntN(30))
		})
		live := map[string]bool{}
		for _, f := range l.files {
			live[f.FileID] = true
		}
		slow := func(ctx context.Context, offset, limit int) (*ListFilesResponse, error) {
			time.Sleep(time.Duration(offset%7) * 100 * time.Microsecond)
			return l.fetch(ctx, offset, limit)
		}
		got, st, err := sweepAll(context.Background(), slow, 4)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, f := range got {
			seen[f.FileID] = true
		}
		for id := range live {
			if !l.gone[id] && !seen[id] {
				t.Fatalf("seed %d: missed %s, never deleted (%d calls, consistent %v)", seed, id, st.Calls, st.Consistent)
			}
		}
		if !st.Consistent {
			t.Fatalf("seed %d: not consistent after %d calls", seed, st.Calls)
		}
	}
}

func TestOverlapFor(t *testing.T) {
	for _, tc := range []struct{ limit, want int }{{1, 0}, {2, 1}, {5, 1}, {10, 1}, {100, 10}, {5000, 500}} {
		if got := overlapFor(tc.limit); got != tc.want {
			t.Errorf("overlapFor(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}
