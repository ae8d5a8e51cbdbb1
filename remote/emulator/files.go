package emulator

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/google/uuid"
)

// The file calls of the contract, except listing (list.go).

// wsPath decodes the workspace path of a by-path call from the escaped URL
// path, segment by segment, and checks it against the name rules.
func wsPath(r *http.Request) (string, *apiError) {
	esc := r.URL.EscapedPath()
	const marker = "/files/path/"
	i := strings.Index(esc, marker)
	if i < 0 {
		return "", errInvalidPath("no file path")
	}
	segs := strings.Split(esc[i+len(marker):], "/")
	for j, seg := range segs {
		u, err := url.PathUnescape(seg)
		if err != nil {
			return "", errInvalidPath("segment %d is not valid percent-encoding", j+1)
		}
		if strings.Contains(u, "/") {
			return "", errInvalidPath("segment %d contains '/'", j+1)
		}
		segs[j] = u
	}
	p := strings.Join(segs, "/")
	if err := remote.ValidatePath(p); err != nil {
		return "", errInvalidPath("invalid path: %v", err)
	}
	return p, nil
}

func fileIDParam(r *http.Request) (string, *apiError) {
	id := r.PathValue("file_id")
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		return "", errValidation("file_id %q is not a UUID", id)
	}
	return u.String(), nil
}

// boolParam parses an optional boolean query parameter.
func boolParam(q url.Values, name string) (val, set bool, e *apiError) {
	if !q.Has(name) {
		return false, false, nil
	}
	b, err := strconv.ParseBool(q.Get(name))
	if err != nil {
		return false, true, errValidation("%s must be true or false, not %q", name, q.Get(name))
	}
	return b, true, nil
}

// versionParam parses the optional version_id (an int64 in decimal).
func versionParam(q url.Values) (int64, bool, *apiError) {
	if !q.Has("version_id") {
		return 0, false, nil
	}
	v, err := strconv.ParseInt(q.Get("version_id"), 10, 64)
	if err != nil {
		return 0, true, errValidation("version_id %q is not an int64", q.Get("version_id"))
	}
	return v, true, nil
}

func vidString(v int64) string { return strconv.FormatInt(v, 10) }

func (s *Server) blobFor(fileID string, vid int64) string {
	return s.ws + "/" + fileID + "/" + vidString(vid)
}

func (s *Server) selfURL(fileID string) string { return s.base + "/files/" + fileID }

// downloadResponse describes version v (nil: none committed) of f, with
// signed links. f is an immutable index record.
func (s *Server) downloadResponse(f *fileRec, v *versionRec, withVersions bool) (*remote.DownloadFileResponse, *apiError) {
	folder, name := remote.SplitPath(f.Path)
	out := &remote.DownloadFileResponse{
		FileID: f.ID, Name: name, Path: folder,
		CreatedAt: f.CreatedAt, CreatedBy: userByID(f.CreatedBy),
		Self: s.selfURL(f.ID),
	}
	if f.Deleted {
		t := f.DeletedAt
		out.DeletedAt, out.DeletedBy = &t, userByID(f.DeletedBy)
	}
	ttl := s.knobs().linkTTL
	var links int64
	if v != nil {
		link, err := s.blobs.link(s.hub, v.Blob, readPerms, ttl)
		if err != nil {
			return nil, problemf(http.StatusInternalServerError, remote.CodeAPIErrors, "%v", err)
		}
		links++
		out.Size, out.VersionID, out.ETag = v.Size, vidString(v.ID), v.ETag
		out.ModifiedAt, out.ModifiedBy, out.Download = v.ModifiedAt, userByID(v.CreatedBy), link
	}
	if withVersions {
		out.Versions = []remote.FileVersion{}
		for i := len(f.Versions) - 1; i >= 0; i-- {
			fv := &f.Versions[i]
			if !fv.Committed {
				continue
			}
			link, err := s.blobs.link(s.hub, fv.Blob, readPerms, ttl)
			if err != nil {
				return nil, problemf(http.StatusInternalServerError, remote.CodeAPIErrors, "%v", err)
			}
			links++
			out.Versions = append(out.Versions, remote.FileVersion{
				VersionID: vidString(fv.ID), CreatedAt: fv.ModifiedAt, CreatedBy: userByID(fv.CreatedBy),
				FileID: f.ID, Name: name, Path: folder, Size: fv.Size, Link: link,
			})
		}
	}
	s.stats.update(func(st *Stats) { st.Links.Download += links })
	return out, nil
}

// answerGet settles f's pending versions, then answers with the version
// asked for. find returns the file under the read lock (nil: none).
func (s *Server) answerGet(w http.ResponseWriter, r *http.Request, find func() *fileRec, allowDeleted bool) *apiError {
	q := r.URL.Query()
	vid, hasVid, e := versionParam(q)
	if e != nil {
		return e
	}
	withVersions, _, e := boolParam(q, "include_versions")
	if e != nil {
		return e
	}
	s.mu.RLock()
	f := find()
	s.mu.RUnlock()
	if f == nil {
		return errNotFound("file not found")
	}
	if err := s.settleFile(r.Context(), f.ID); err != nil {
		return errBlobBackend(err)
	}
	s.mu.RLock()
	f = s.idx.files[f.ID]
	s.mu.RUnlock()
	if f == nil || !f.visible() {
		return errNotFound("file not found")
	}
	if f.Deleted && !allowDeleted {
		return errGone("file %s was deleted", f.ID)
	}
	v := f.latest()
	if hasVid {
		if v = f.version(vid); v == nil || !v.Committed {
			return errNotFound("file %s has no version %d", f.ID, vid)
		}
	}
	resp, e := s.downloadResponse(f, v, withVersions)
	if e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
	id, e := fileIDParam(r)
	if e != nil {
		return e
	}
	deleted, _, e := boolParam(r.URL.Query(), "deleted")
	if e != nil {
		return e
	}
	return s.answerGet(w, r, func() *fileRec { return s.idx.files[id] }, deleted)
}

func (s *Server) getFileByPath(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
	p, e := wsPath(r)
	if e != nil {
		return e
	}
	return s.answerGet(w, r, func() *fileRec { return s.idx.byPath[p] }, false)
}

// commitRecord persists nf and swaps it into the index. mu must be held.
func (s *Server) commitRecord(nf *fileRec) *apiError {
	if err := s.store.putFile(nf); err != nil {
		return errStore(err)
	}
	s.idx.put(nf)
	return nil
}

// newVersion adds a pending version to f (nil: a new file at p) and answers
// with its upload link. mu must be held.
func (s *Server) newVersion(w http.ResponseWriter, f *fileRec, p string, c *caller) *apiError {
	now := time.Now().UTC()
	var nf *fileRec
	if f == nil {
		nf = &fileRec{ID: uuid.NewString(), Path: p, Seq: s.idx.seq + 1, CreatedAt: now, CreatedBy: c.user.ID}
	} else {
		nf = f.clone()
	}
	vid := s.idx.nextVersionID(now)
	nf.Versions = append(nf.Versions, versionRec{ID: vid, Blob: s.blobFor(nf.ID, vid), CreatedAt: now, CreatedBy: c.user.ID})
	link, err := s.blobs.link(s.hub, s.blobFor(nf.ID, vid), uploadPerms, s.knobs().linkTTL)
	if err != nil {
		return problemf(http.StatusInternalServerError, remote.CodeAPIErrors, "%v", err)
	}
	if e := s.commitRecord(nf); e != nil {
		return e
	}
	s.stats.update(func(st *Stats) { st.Links.Upload++ })
	writeJSON(w, http.StatusOK, remote.UploadFileResponse{FileID: nf.ID, Upload: link, VersionID: vidString(vid)})
	return nil
}

// reissue answers with a new upload link for the unfinished version vid of
// the file find returns (under the read lock).
func (s *Server) reissue(w http.ResponseWriter, r *http.Request, find func() (*fileRec, *apiError), vid int64) *apiError {
	s.mu.RLock()
	f, e := find()
	s.mu.RUnlock()
	if e != nil {
		return e
	}
	v := f.version(vid)
	if v == nil {
		return errNotFound("file %s has no version %d", f.ID, vid)
	}
	if !v.Committed {
		// The client may have committed straight to storage.
		if err := s.settleBlob(r.Context(), v.Blob); err != nil {
			return errBlobBackend(err)
		}
		s.mu.RLock()
		f = s.idx.files[f.ID]
		s.mu.RUnlock()
		v = f.version(vid)
	}
	if v.Committed {
		return problemf(http.StatusBadRequest, remote.CodeNoUploadInProgress,
			"the upload of version %d of file %s has already been completed", vid, f.ID)
	}
	link, err := s.blobs.link(s.hub, v.Blob, uploadPerms, s.knobs().linkTTL)
	if err != nil {
		return problemf(http.StatusInternalServerError, remote.CodeAPIErrors, "%v", err)
	}
	s.stats.update(func(st *Stats) { st.Links.UploadReissued++ })
	writeJSON(w, http.StatusOK, remote.UploadFileResponse{FileID: f.ID, Upload: link, VersionID: vidString(vid)})
	return nil
}

func (s *Server) upsertFileByPath(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
	if e := requireEditor(c); e != nil {
		return e
	}
	p, e := wsPath(r)
	if e != nil {
		return e
	}
	vid, hasVid, e := versionParam(r.URL.Query())
	if e != nil {
		return e
	}
	if hasVid {
		return s.reissue(w, r, func() (*fileRec, *apiError) {
			if f := s.idx.byPath[p]; f != nil {
				return f, nil
			}
			return nil, errNotFound("unable to complete partial upload: no file exists at %s", p)
		}, vid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.idx.byPath[p]
	if why := s.idx.conflict(p, f); why != "" {
		return errConflict("cannot upload to %s: %s", p, why)
	}
	return s.newVersion(w, f, p, c)
}

func (s *Server) updateFile(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
	if e := requireEditor(c); e != nil {
		return e
	}
	id, e := fileIDParam(r)
	if e != nil {
		return e
	}
	vid, hasVid, e := versionParam(r.URL.Query())
	if e != nil {
		return e
	}
	find := func() (*fileRec, *apiError) {
		f := s.idx.files[id]
		switch {
		case f == nil:
			return nil, errNotFound("file %s not found", id)
		case f.Deleted:
			return nil, errGone("file %s was deleted", id)
		}
		return f, nil
	}
	if hasVid {
		return s.reissue(w, r, find, vid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, e := find()
	if e != nil {
		return e
	}
	return s.newVersion(w, f, f.Path, c)
}

// restoreFile is update-by-id with deleted=false.
func (s *Server) restoreFile(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
	if e := requireEditor(c); e != nil {
		return e
	}
	id, e := fileIDParam(r)
	if e != nil {
		return e
	}
	q := r.URL.Query()
	deleted, _, e := boolParam(q, "deleted")
	if e != nil {
		return e
	}
	if deleted {
		return errBadRequest("deleted=true is not an update; use DELETE to delete a file")
	}
	if q.Has("version_id") {
		return errBadRequest("version_id cannot be combined with deleted=false")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.idx.files[id]
	switch {
	case f == nil:
		return errNotFound("file %s not found", id)
	case !f.Deleted:
		return errBadRequest("file %s is not deleted", id)
	}
	for _, a := range ancestors(f.Path) {
		if s.idx.byPath[a] != nil {
			return errConflict("cannot restore %s: a file exists at %s, a parent folder", f.Path, a)
		}
	}
	nf := f.clone()
	nf.Deleted, nf.DeletedAt, nf.DeletedBy = false, time.Time{}, ""
	moved := s.idx.byPath[f.Path] != nil || s.idx.folders[f.Path] > 0
	if moved {
		nf.Path = s.idx.freeName(f.Path)
	}
	if e := s.commitRecord(nf); e != nil {
		return e
	}
	if !moved {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	resp, e := s.downloadResponse(nf, nf.latest(), false)
	if e != nil {
		return e
	}
	w.Header().Set("Location", resp.Self)
	writeJSON(w, http.StatusSeeOther, resp)
	return nil
}

// markDeleted deletes f (and so all its versions). mu must be held.
func (s *Server) markDeleted(w http.ResponseWriter, f *fileRec, c *caller) *apiError {
	nf := f.clone()
	nf.Deleted, nf.DeletedAt, nf.DeletedBy = true, time.Now().UTC(), c.user.ID
	if e := s.commitRecord(nf); e != nil {
		return e
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) deleteFile(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
	if e := requireEditor(c); e != nil {
		return e
	}
	id, e := fileIDParam(r)
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.idx.files[id]
	switch {
	case f == nil || !f.visible():
		return errNotFound("file %s not found", id)
	case f.Deleted:
		return errGone("file %s was already deleted", id)
	}
	return s.markDeleted(w, f, c)
}

func (s *Server) deleteFileByPath(w http.ResponseWriter, r *http.Request, c *caller) *apiError {
	if e := requireEditor(c); e != nil {
		return e
	}
	p, e := wsPath(r)
	if e != nil {
		return e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.idx.byPath[p]
	if f == nil || !f.visible() {
		return errNotFound("no file at %s", p)
	}
	return s.markDeleted(w, f, c)
}
