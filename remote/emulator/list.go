package emulator

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/google/uuid"
)

// listQuery is a parsed GET /files query.
type listQuery struct {
	limit, offset           int
	deleted                 bool
	fileName                string // lower case
	author                  string
	modifiedBy, deletedBy   string
	created, modified, gone []timeCond
	order                   []orderKey
}

type timeCond struct {
	op string // eq, gt, gte, lt, lte
	t  time.Time
}

func (c timeCond) match(t time.Time) bool {
	switch c.op {
	case "gt":
		return t.After(c.t)
	case "gte":
		return !t.Before(c.t)
	case "lt":
		return t.Before(c.t)
	case "lte":
		return !t.After(c.t)
	}
	return t.Equal(c.t)
}

type orderKey struct {
	field string
	desc  bool
}

var orderFields = map[string]bool{"name": true, "path": true, "size": true, "created_at": true, "modified_at": true, "deleted_at": true}

func parseTime(v string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, true
	}
	return time.Time{}, false
}

// parseListQuery parses q; a page is at most maxLimit files (the contract's
// bound on `limit` is checked first).
func parseListQuery(q url.Values, maxLimit int) (*listQuery, *apiError) {
	lqy := &listQuery{limit: DefaultListLimit}
	intParam := func(name string, lo, hi int, dst *int) *apiError {
		if !q.Has(name) {
			return nil
		}
		n, err := strconv.Atoi(q.Get(name))
		if err != nil || n < lo || n > hi {
			return errValidation("%s must be an integer from %d to %d, not %q", name, lo, hi, q.Get(name))
		}
		*dst = n
		return nil
	}
	if e := intParam("limit", 1, remote.MaxListLimit, &lqy.limit); e != nil {
		return nil, e
	}
	if e := intParam("offset", 0, 1<<31-1, &lqy.offset); e != nil {
		return nil, e
	}
	lqy.limit = min(lqy.limit, maxLimit)
	var e *apiError
	if lqy.deleted, _, e = boolParam(q, "deleted"); e != nil {
		return nil, e
	}
	lqy.fileName = strings.ToLower(q.Get("file_name"))
	for name, dst := range map[string]*string{"author": &lqy.author, "modified_by": &lqy.modifiedBy, "deleted_by": &lqy.deletedBy} {
		if v := q.Get(name); v != "" {
			u, err := uuid.Parse(v)
			if err != nil {
				return nil, errValidation("%s %q is not a user id (UUID)", name, v)
			}
			*dst = u.String()
		}
	}
	for name, dst := range map[string]*[]timeCond{"created_at": &lqy.created, "modified_at": &lqy.modified, "deleted_at": &lqy.gone} {
		for _, v := range q[name] {
			op, val, ok := strings.Cut(v, ":")
			if !ok || !slices.Contains([]string{"eq", "gt", "gte", "lt", "lte"}, op) {
				op, val = "eq", v
			}
			t, ok := parseTime(val)
			if !ok {
				return nil, errValidation("%s %q is not [gt:|gte:|lt:|lte:|eq:]<RFC 3339 time>", name, v)
			}
			*dst = append(*dst, timeCond{op, t})
		}
	}
	if ob := q.Get("order_by"); ob != "" {
		for _, part := range strings.Split(ob, ",") {
			dir, field, ok := strings.Cut(strings.TrimSpace(part), ":")
			if !ok {
				dir, field = "asc", dir
			}
			if (dir != "asc" && dir != "desc") || !orderFields[field] {
				return nil, errValidation("order_by %q: want [asc:|desc:]field, field one of name, path, size, created_at, modified_at, deleted_at", part)
			}
			lqy.order = append(lqy.order, orderKey{field, dir == "desc"})
		}
	}
	return lqy, nil
}

// match applies the filters to a visible file.
func (q *listQuery) match(f *fileRec) bool {
	if f.Deleted != q.deleted {
		return false
	}
	v := f.latest()
	if q.fileName != "" {
		_, name := remote.SplitPath(f.Path)
		if !strings.Contains(strings.ToLower(name), q.fileName) {
			return false
		}
	}
	if (q.author != "" && f.CreatedBy != q.author) ||
		(q.modifiedBy != "" && v.CreatedBy != q.modifiedBy) ||
		(q.deletedBy != "" && (!f.Deleted || f.DeletedBy != q.deletedBy)) {
		return false
	}
	for _, c := range q.created {
		if !c.match(f.CreatedAt) {
			return false
		}
	}
	for _, c := range q.modified {
		if !c.match(v.ModifiedAt) {
			return false
		}
	}
	for _, c := range q.gone {
		if !f.Deleted || !c.match(f.DeletedAt) {
			return false
		}
	}
	return true
}

func compareBy(field string, a, b *fileRec) int {
	switch field {
	case "name":
		_, an := remote.SplitPath(a.Path)
		_, bn := remote.SplitPath(b.Path)
		return strings.Compare(an, bn)
	case "path":
		af, _ := remote.SplitPath(a.Path)
		bf, _ := remote.SplitPath(b.Path)
		return strings.Compare(af, bf)
	case "size":
		return cmp.Compare(a.latest().Size, b.latest().Size)
	case "created_at":
		return a.CreatedAt.Compare(b.CreatedAt)
	case "modified_at":
		return a.latest().ModifiedAt.Compare(b.latest().ModifiedAt)
	case "deleted_at":
		return a.DeletedAt.Compare(b.DeletedAt)
	}
	return 0
}

// listFiles: GET /files. The default order is creation order (then file
// id), which is stable while files are added at the end. Whatever order_by
// says, ties are broken by creation sequence and then file id: the order is
// total and a file keeps its place relative to the others while it lives.
func (s *Server) listFiles(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
	q := r.URL.Query()
	lqy, e := parseListQuery(q, s.cfg.MaxListLimit)
	if e != nil {
		return e
	}
	if err := s.settleAll(r.Context()); err != nil {
		return errBlobBackend(err)
	}
	s.mu.RLock()
	hits := make([]*fileRec, 0, len(s.idx.files))
	for _, f := range s.idx.files {
		if f.visible() && lqy.match(f) {
			hits = append(hits, f)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(hits, func(a, b *fileRec) int {
		for _, k := range lqy.order {
			if n := compareBy(k.field, a, b); n != 0 {
				if k.desc {
					return -n
				}
				return n
			}
		}
		if n := cmp.Compare(a.Seq, b.Seq); n != 0 {
			return n
		}
		return strings.Compare(a.ID, b.ID)
	})
	total := len(hits)
	lo := min(lqy.offset, total)
	hi := min(lo+lqy.limit, total)
	page := hits[lo:hi]
	resp := remote.ListFilesResponse{
		Count: len(page), Total: total, Offset: lqy.offset, Limit: lqy.limit,
		Files: make([]remote.ListFile, 0, len(page)),
		Links: remote.ListLinks{Self: s.pageURL(q, lqy.offset, lqy.limit, false)},
	}
	for _, f := range page {
		resp.Files = append(resp.Files, s.listFile(f))
	}
	if lqy.offset+lqy.limit < total {
		next := s.pageURL(q, lqy.offset+lqy.limit, lqy.limit, true)
		resp.Links.Next = &next
	}
	if lqy.offset > 0 {
		prev := s.pageURL(q, max(lqy.offset-lqy.limit, 0), lqy.limit, true)
		resp.Links.Prev = &prev
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// pageURL is the absolute URL of the listing q at offset (self keeps the
// query as given).
func (s *Server) pageURL(q url.Values, offset, limit int, paging bool) string {
	if paging {
		c := url.Values{}
		for k, v := range q {
			c[k] = v
		}
		c.Set("offset", strconv.Itoa(offset))
		c.Set("limit", strconv.Itoa(limit))
		q = c
	}
	u := s.base + "/files"
	if enc := q.Encode(); enc != "" {
		u += "?" + enc
	}
	return u
}

func (s *Server) listFile(f *fileRec) remote.ListFile {
	v := f.latest()
	folder, name := remote.SplitPath(f.Path)
	lf := remote.ListFile{
		FileID: f.ID, Name: name, Path: folder, Size: v.Size, VersionID: vidString(v.ID), ETag: v.ETag,
		CreatedAt: f.CreatedAt, CreatedBy: userByID(f.CreatedBy),
		ModifiedAt: v.ModifiedAt, ModifiedBy: userByID(v.CreatedBy),
		Links: remote.FileLinks{Self: s.selfURL(f.ID)},
	}
	if f.Deleted {
		t := f.DeletedAt
		lf.DeletedAt, lf.DeletedBy = &t, userByID(f.DeletedBy)
	}
	return lf
}
