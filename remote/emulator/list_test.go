package emulator_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evofs/evofs/remote/emulator"
)

// TestList12001 pages through 12,001 synthetic files in 3 pages.
func TestList12001(t *testing.T) {
	e := newEnv(t, func(c *emulator.Config) { c.Synthetic = 12001 })
	seen := map[string]bool{}
	next := e.base + "/files?limit=5000"
	wantCounts := []int{5000, 5000, 2001}
	for page := 0; next != ""; page++ {
		if page >= len(wantCounts) {
			t.Fatalf("more than %d pages", len(wantCounts))
		}
		start := time.Now()
		resp, b := e.do(http.MethodGet, next, e.tok, nil)
		wantStatus(t, resp, b, http.StatusOK)
		l := decode[listResponse](t, b)
		t.Logf("page %d: %d files in %s", page, l.Count, time.Since(start))
		if l.Total != 12001 || l.Count != wantCounts[page] || len(l.Files) != l.Count || l.Offset != page*5000 || l.Limit != 5000 {
			t.Fatalf("page %d: total %d count %d offset %d limit %d", page, l.Total, l.Count, l.Offset, l.Limit)
		}
		if (page == 0) != (l.Links.Prev == nil) {
			t.Fatalf("page %d: prev %v", page, l.Links.Prev)
		}
		for _, f := range l.Files {
			if seen[f.FileID] {
				t.Fatalf("file %s listed twice", f.FileID)
			}
			seen[f.FileID] = true
		}
		next = ""
		if l.Links.Next != nil {
			next = *l.Links.Next
		}
	}
	if len(seen) != 12001 {
		t.Fatalf("%d distinct files", len(seen))
	}
	// A synthetic file downloads.
	l := e.list("?limit=1&file_name=FILE00042")
	if l.Total != 1 || l.Files[0].Name != "file00042.txt" || l.Files[0].Path != "/synthetic/d00/d00/" {
		t.Fatalf("file_name filter: %+v", l)
	}
	if s := e.download(e.getByPath("synthetic/d00/d00/file00042.txt", "").Download); s != "synthetic file\n" {
		t.Fatalf("synthetic content %q", s)
	}
}

// listResponse keeps the next/prev links as pointers to tell null.
type listResponse struct {
	Count, Total, Offset, Limit int
	Files                       []struct {
		FileID string `json:"file_id"`
		Name   string `json:"name"`
		Path   string `json:"path"`
	}
	Links struct {
		Self string  `json:"self"`
		Next *string `json:"next"`
		Prev *string `json:"prev"`
	}
}

// TestListFilters: filters and ordering.
func TestListFilters(t *testing.T) {
	e := newEnv(t)
	a := e.upload("b/Alpha.txt", "1")
	e.upload("a/beta.txt", "22")
	c := e.upload("gamma.bin", "333")
	cut := time.Now().UTC()
	e.call(http.MethodDelete, "/files/"+c.FileID)

	names := func(q string) string {
		t.Helper()
		l := e.list(q)
		var out []string
		for _, f := range l.Files {
			out = append(out, f.Name)
		}
		return strings.Join(out, ",")
	}
	editor := e.list("").Files[0].CreatedBy.ID
	tests := []struct{ q, want string }{
		{"", "Alpha.txt,beta.txt"},
		{"?order_by=desc:size", "beta.txt,Alpha.txt"},
		{"?order_by=asc:name", "Alpha.txt,beta.txt"},
		{"?order_by=asc:path,desc:name", "beta.txt,Alpha.txt"},
		{"?file_name=ALP", "Alpha.txt"},
		{"?deleted=true", "gamma.bin"},
		{"?deleted=true&deleted_at=gte:" + url.QueryEscape(cut.Format(time.RFC3339Nano)), "gamma.bin"},
		{"?deleted=true&deleted_at=lt:" + url.QueryEscape(cut.Format(time.RFC3339Nano)), ""},
		{"?created_at=lt:2000-01-01T00:00:00Z", ""},
		{"?created_at=gt:2000-01-01T00:00:00Z&created_at=lt:2999-01-01T00:00:00Z", "Alpha.txt,beta.txt"},
		{"?author=" + editor + "&modified_by=" + editor, "Alpha.txt,beta.txt"},
		{"?author=00000000-0000-4000-8000-000000000000", ""},
		{"?deleted=true&deleted_by=" + editor, "gamma.bin"},
		{"?limit=1&offset=1", "beta.txt"},
		{"?offset=5", ""},
	}
	for _, tc := range tests {
		if got := names(tc.q); got != tc.want {
			t.Errorf("list%s = %q, want %q", tc.q, got, tc.want)
		}
	}
	l := e.list("?limit=1&offset=1")
	if l.Links.Prev == nil || !strings.Contains(*l.Links.Prev, "offset=0") || l.Links.Next != nil {
		t.Fatalf("links %+v", l.Links)
	}
	if l.Files[0].FileID == a.FileID {
		t.Fatal("offset ignored")
	}
}

// TestListMaxLimit: a smaller page cap answers a larger limit with fewer
// files and says so; pages ordered by a key all files share (their
// creation time) still tile the listing, ties broken the same way on every
// page.
func TestListMaxLimit(t *testing.T) {
	e := newEnv(t, func(c *emulator.Config) { c.Synthetic, c.MaxListLimit = 25, 10 })
	seen := map[string]bool{}
	for off := 0; off < 30; off += 10 {
		l := e.list("?limit=5000&order_by=asc:created_at&offset=" + strconv.Itoa(off))
		if l.Limit != 10 || l.Total != 25 || l.Count != min(10, 25-off) {
			t.Fatalf("offset %d: limit %d total %d count %d", off, l.Limit, l.Total, l.Count)
		}
		for _, f := range l.Files {
			if seen[f.FileID] {
				t.Fatalf("offset %d: %s listed twice", off, f.FileID)
			}
			seen[f.FileID] = true
		}
	}
	if len(seen) != 25 {
		t.Fatalf("%d distinct files, want 25", len(seen))
	}
	if l := e.list(""); l.Limit != 10 || l.Count != 10 {
		t.Fatalf("no limit: limit %d count %d, want 10", l.Limit, l.Count)
	}
}
