package emulator

import (
	"strconv"
	"strings"
	"time"
)

// verRef names one version of one file.
type verRef struct {
	fileID    string
	versionID int64
}

// index is the in-memory view of the metadata, rebuilt from the store at
// start. It is not safe for concurrent use: Server.mu guards it (readers
// take the read lock, writers the write lock). Records in it are never
// mutated in place (see fileRec.clone), so a pointer read under the read lock
// stays consistent after the lock is released.
type index struct {
	files   map[string]*fileRec // by file id, deleted ones too
	byPath  map[string]*fileRec // live (not deleted) files, with or without a committed version
	folders map[string]int      // folder path ("a", "a/b") -> live files beneath it
	byBlob  map[string]verRef   // unshared blob name -> its version
	pending map[string]verRef   // blob name -> uncommitted version
	seq     int64               // highest fileRec.Seq
	lastVer int64               // highest version id handed out
}

func newIndex() *index {
	return &index{
		files:   map[string]*fileRec{},
		byPath:  map[string]*fileRec{},
		folders: map[string]int{},
		byBlob:  map[string]verRef{},
		pending: map[string]verRef{},
	}
}

// ancestors lists the folders of a path: "a/b/c" -> "a", "a/b".
func ancestors(p string) []string {
	var out []string
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			out = append(out, p[:i])
		}
	}
	return out
}

// put adds or replaces a record, keeping every map in step.
func (x *index) put(f *fileRec) {
	if old := x.files[f.ID]; old != nil {
		x.unlink(old)
	}
	x.files[f.ID] = f
	if !f.Deleted {
		x.byPath[f.Path] = f
		for _, a := range ancestors(f.Path) {
			x.folders[a]++
		}
	}
	for _, v := range f.Versions {
		ref := verRef{f.ID, v.ID}
		if !v.Shared {
			x.byBlob[v.Blob] = ref
		}
		if !v.Committed {
			x.pending[v.Blob] = ref
		}
	}
	x.seq = max(x.seq, f.Seq)
	if n := len(f.Versions); n > 0 {
		x.lastVer = max(x.lastVer, f.Versions[n-1].ID)
	}
}

func (x *index) unlink(f *fileRec) {
	if !f.Deleted && x.byPath[f.Path] == f {
		delete(x.byPath, f.Path)
		for _, a := range ancestors(f.Path) {
			if x.folders[a]--; x.folders[a] <= 0 {
				delete(x.folders, a)
			}
		}
	}
	for _, v := range f.Versions {
		if !v.Shared {
			delete(x.byBlob, v.Blob)
		}
		delete(x.pending, v.Blob)
	}
}

// nextVersionID hands out a unique, increasing version id: microseconds
// since the epoch, or one more than the last if the clock is behind.
func (x *index) nextVersionID(now time.Time) int64 {
	x.lastVer = max(x.lastVer+1, now.UnixMicro())
	return x.lastVer
}

// conflict reports why a live file cannot be at p (409), or "" if it can:
// p is a folder (live files exist below it), or one of its ancestors is a
// live file. self, if not nil, is ignored (a file does not conflict with
// itself).
func (x *index) conflict(p string, self *fileRec) string {
	if x.folders[p] > 0 {
		return "a folder exists at " + p
	}
	for _, a := range ancestors(p) {
		if f := x.byPath[a]; f != nil && f != self {
			return "a file exists at " + a + ", a parent folder of " + p
		}
	}
	return ""
}

// freeName finds a free path for a restored file whose path p is taken:
// "name (1).ext", "name (2).ext", ... in the same folder.
func (x *index) freeName(p string) string {
	dir, name := "", p
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		dir, name = p[:i+1], p[i+1:]
	}
	stem, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		stem, ext = name[:i], name[i:]
	}
	for n := 1; ; n++ {
		c := dir + stem + " (" + strconv.Itoa(n) + ")" + ext
		if x.byPath[c] == nil && x.folders[c] == 0 {
			return c
		}
	}
}
