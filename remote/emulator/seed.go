package emulator

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/evofs/evofs/remote"
	"github.com/google/uuid"
)

// Seeding fills an empty workspace at start: from a folder (each regular
// file one committed version at its relative path) and/or with N synthetic
// small files that share one blob. Bytes go straight to Azurite with the
// shared key, not through the proxy, so no stats are counted.

const (
	syntheticContent = "synthetic file\n"
	syntheticPerDir  = 100
)

func (s *Server) seed(ctx context.Context) error {
	if s.cfg.Seed == "" && s.cfg.Synthetic <= 0 && s.cfg.SyntheticDeleted <= 0 {
		return nil
	}
	s.mu.RLock()
	empty := len(s.idx.files) == 0
	s.mu.RUnlock()
	if !empty {
		s.log.Info("workspace is not empty: not seeding")
		return nil
	}
	var recs []*fileRec
	now := time.Now().UTC()
	var deleted bool // add seeds deleted files
	add := func(p string, v versionRec) {
		s.mu.Lock()
		defer s.mu.Unlock()
		v.ID = s.idx.nextVersionID(now)
		s.idx.seq++
		f := &fileRec{ID: uuid.NewString(), Path: p, Seq: s.idx.seq, CreatedAt: now, CreatedBy: editorUser.ID}
		v.CreatedAt, v.CreatedBy, v.Committed = now, editorUser.ID, true
		f.Versions = []versionRec{v}
		if deleted {
			f.Deleted, f.DeletedAt, f.DeletedBy = true, now, editorUser.ID
		}
		recs = append(recs, f)
	}
	if s.cfg.Seed != "" {
		err := filepath.WalkDir(s.cfg.Seed, func(full string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			rel, err := filepath.Rel(s.cfg.Seed, full)
			if err != nil {
				return err
			}
			p := filepath.ToSlash(rel)
			if err := remote.ValidatePath(p); err != nil {
				s.log.Warn("seed: skipping a file the service would refuse", "path", p, "err", err)
				return nil
			}
			st, err := s.uploadSeedFile(ctx, full)
			if err != nil {
				return err
			}
			add(p, versionRec{Blob: st.blob, Size: st.size, ETag: st.etag, ModifiedAt: st.modified})
			return nil
		})
		if err != nil {
			return fmt.Errorf("seed from %s: %w", s.cfg.Seed, err)
		}
	}
	if s.cfg.Synthetic > 0 || s.cfg.SyntheticDeleted > 0 {
		blob := s.ws + "/synthetic"
		st, err := s.blobs.uploadBytes(ctx, blob, []byte(syntheticContent))
		if err != nil {
			return fmt.Errorf("seed synthetic files: %w", err)
		}
		for i := range s.cfg.Synthetic {
			p := fmt.Sprintf("synthetic/d%02d/d%02d/file%05d.txt", i/(syntheticPerDir*10), (i/syntheticPerDir)%10, i)
			add(p, versionRec{Blob: blob, Shared: true, Size: st.size, ETag: st.etag, ModifiedAt: st.modified})
		}
		deleted = true
		for i := range s.cfg.SyntheticDeleted {
			p := fmt.Sprintf("deleted/d%02d/d%02d/file%05d.txt", i/(syntheticPerDir*10), (i/syntheticPerDir)%10, i)
			add(p, versionRec{Blob: blob, Shared: true, Size: st.size, ETag: st.etag, ModifiedAt: st.modified})
		}
	}
	if err := s.store.putFiles(recs); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range recs {
		s.idx.put(f)
	}
	s.log.Info("seeded the workspace", "files", len(recs))
	return nil
}

type seededBlob struct {
	blobState
	blob string
}

// uploadSeedFile uploads a local file to a fresh blob name.
func (s *Server) uploadSeedFile(ctx context.Context, full string) (seededBlob, error) {
	f, err := os.Open(full)
	if err != nil {
		return seededBlob{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return seededBlob{}, err
	}
	blob := s.ws + "/seed/" + uuid.NewString()
	st, err := s.blobs.uploadFile(ctx, blob, f, fi.Size())
	if err != nil {
		return seededBlob{}, err
	}
	return seededBlob{blobState: st, blob: blob}, nil
}
