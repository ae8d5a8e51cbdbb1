package emulator

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Settling: a version becomes committed (and, if it has the highest
// committed id, the file's latest) once its blob is committed in storage.
// The blob proxy settles right after forwarding a successful commit; list
// and get settle still-pending versions by asking storage, so that commits
// made straight to Azurite are seen too.

const settleConcurrency = 8

// settleBlob checks blob in storage and, if it is committed, records the
// version that owns it as committed (size, etag, time). Re-settling a
// committed version refreshes its size and etag (its blob was written again).
func (s *Server) settleBlob(ctx context.Context, blob string) error {
	s.mu.RLock()
	_, ok := s.idx.byBlob[blob]
	s.mu.RUnlock()
	if !ok {
		return nil
	}
	s.stats.update(func(st *Stats) { st.StorageReads++ })
	st, err := s.blobs.state(ctx, blob)
	if err != nil {
		return fmt.Errorf("settle blob %s: %w", blob, err)
	}
	return s.applyState(blob, st, false)
}

// settleAnswered settles blob from the answer of the Put Blob that just
// committed it (its ETag and Last-Modified, the request's length), saving
// storage a properties read per upload. Only a version's first commit is
// settled so: if it is committed already, two writes of its blob may have
// raced, and only storage knows which one is there now.
func (s *Server) settleAnswered(ctx context.Context, blob string, st blobState) error {
	if err := s.applyState(blob, st, true); !errors.Is(err, errSettledBefore) {
		return err
	}
	return s.settleBlob(ctx, blob)
}

var errSettledBefore = errors.New("version committed before")

// applyState records blob's storage state st on the version that owns it.
// onlyFirst: a version committed already is left alone (errSettledBefore).
func (s *Server) applyState(blob string, st blobState, onlyFirst bool) error {
	if !st.committed {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, ok := s.idx.byBlob[blob]
	if !ok {
		return nil
	}
	f := s.idx.files[ref.fileID]
	if f == nil {
		return nil
	}
	v := f.version(ref.versionID)
	if v == nil || (v.Committed && v.ETag == st.etag) {
		return nil
	}
	if v.Committed && onlyFirst {
		return errSettledBefore
	}
	nf := f.clone()
	nv := nf.version(ref.versionID)
	nv.Committed, nv.Size, nv.ETag, nv.ModifiedAt = true, st.size, st.etag, st.modified
	if e := s.commitRecord(nf); e != nil {
		return fmt.Errorf("settle version %d of file %s: %s", ref.versionID, ref.fileID, e.detail)
	}
	return nil
}

// settleBlobs settles many blobs, a few at a time.
func (s *Server) settleBlobs(ctx context.Context, blobs []string) error {
	if len(blobs) == 0 {
		return nil
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, settleConcurrency)
	)
	for _, b := range blobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := s.settleBlob(ctx, b); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

// settleFile settles the pending versions of one file.
func (s *Server) settleFile(ctx context.Context, fileID string) error {
	s.mu.RLock()
	var blobs []string
	if f := s.idx.files[fileID]; f != nil {
		for _, v := range f.Versions {
			if !v.Committed {
				blobs = append(blobs, v.Blob)
			}
		}
	}
	s.mu.RUnlock()
	return s.settleBlobs(ctx, blobs)
}

// settleAll settles every pending version of the workspace.
func (s *Server) settleAll(ctx context.Context) error {
	s.mu.RLock()
	blobs := make([]string, 0, len(s.idx.pending))
	for b := range s.idx.pending {
		blobs = append(blobs, b)
	}
	s.mu.RUnlock()
	return s.settleBlobs(ctx, blobs)
}
