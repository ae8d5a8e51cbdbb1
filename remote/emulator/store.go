package emulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// The metadata schema: one JSON record per file under "file/<file_id>", with
// its versions inside, plus a few "meta/..." keys (organisation, workspace,
// token signing key) and "used-refresh/<id>" markers (with a TTL) for refresh
// tokens already redeemed.

const (
	keyFilePrefix   = "file/"
	keyOrgID        = "meta/org_id"
	keyWorkspaceID  = "meta/workspace_id"
	keySigningKey   = "meta/signing_key"
	keyUsedRefresh  = "used-refresh/"
	badgerMemTable  = 8 << 20
	badgerVlogBytes = 64 << 20
)

// versionRec is one version of a file.
type versionRec struct {
	ID        int64     `json:"id"`
	Blob      string    `json:"blob"`   // blob name in the container
	Shared    bool      `json:"shared"` // the blob is shared with other versions (synthetic files)
	Committed bool      `json:"committed"`
	Size      int64     `json:"size"`
	ETag      string    `json:"etag"`
	CreatedAt time.Time `json:"created_at"` // when its upload link was first asked for
	CreatedBy string    `json:"created_by"` // user id
	// ModifiedAt is when the blob was found committed (settled).
	ModifiedAt time.Time `json:"modified_at"`
}

// fileRec is one file: its path, lifecycle and versions (ascending ids).
type fileRec struct {
	ID        string       `json:"id"`
	Path      string       `json:"path"` // workspace path without leading slash: "a/b/c.txt"
	Seq       int64        `json:"seq"`  // creation order, for the default listing order
	CreatedAt time.Time    `json:"created_at"`
	CreatedBy string       `json:"created_by"`
	Deleted   bool         `json:"deleted"`
	DeletedAt time.Time    `json:"deleted_at"`
	DeletedBy string       `json:"deleted_by"`
	Versions  []versionRec `json:"versions"`
}

// clone deep-copies f: the index only ever holds records nobody mutates in
// place, so a change is made to a clone, persisted, then swapped in.
func (f *fileRec) clone() *fileRec {
	c := *f
	c.Versions = append([]versionRec(nil), f.Versions...)
	return &c
}

// latest is the committed version with the highest id, or nil.
func (f *fileRec) latest() *versionRec {
	for i := len(f.Versions) - 1; i >= 0; i-- {
		if f.Versions[i].Committed {
			return &f.Versions[i]
		}
	}
	return nil
}

// version finds version id, or nil.
func (f *fileRec) version(id int64) *versionRec {
	for i := range f.Versions {
		if f.Versions[i].ID == id {
			return &f.Versions[i]
		}
	}
	return nil
}

// visible: a file with nothing committed is neither listed nor gettable.
func (f *fileRec) visible() bool { return f.latest() != nil }

// store persists metadata in Badger. Badger is safe for concurrent use; the
// store adds no state of its own.
type store struct {
	db *badger.DB
}

func openStore(dir string) (*store, error) {
	opts := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithMemTableSize(badgerMemTable).
		WithNumMemtables(2).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(0).
		WithValueLogFileSize(badgerVlogBytes)
	if dir == "" {
		opts = opts.WithInMemory(true)
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open metadata store %q: %w", dir, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close metadata store: %w", err)
	}
	return nil
}

// meta reads a meta key; ok is false if it is not set.
func (s *store) meta(key string) (val []byte, ok bool, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		val, err = it.ValueCopy(nil)
		ok = err == nil
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	return val, ok, nil
}

func (s *store) setMeta(key string, val []byte) error {
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(key), val) }); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// metaOrInit returns the value of key, setting it to init() first if unset
// (or to want, if want is not empty).
func (s *store) metaOrInit(key, want string, init func() string) (string, error) {
	if want != "" {
		return want, s.setMeta(key, []byte(want))
	}
	v, ok, err := s.meta(key)
	if err != nil {
		return "", err
	}
	if ok {
		return string(v), nil
	}
	nv := init()
	return nv, s.setMeta(key, []byte(nv))
}

func (s *store) putFile(f *fileRec) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode file %s: %w", f.ID, err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(keyFilePrefix+f.ID), b) }); err != nil {
		return fmt.Errorf("write file %s: %w", f.ID, err)
	}
	return nil
}

// putFiles writes many records in one batch (seeding).
func (s *store) putFiles(files []*fileRec) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, f := range files {
		b, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("encode file %s: %w", f.ID, err)
		}
		if err := wb.Set([]byte(keyFilePrefix+f.ID), b); err != nil {
			return fmt.Errorf("write file %s: %w", f.ID, err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("write %d files: %w", len(files), err)
	}
	return nil
}

func (s *store) loadFiles() ([]*fileRec, error) {
	var out []*fileRec
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte(keyFilePrefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var f fileRec
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &f) }); err != nil {
				return fmt.Errorf("decode %s: %w", it.Item().Key(), err)
			}
			out = append(out, &f)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load files: %w", err)
	}
	return out, nil
}

// useRefresh marks refresh token id as redeemed; it reports false if it was
// already.
func (s *store) useRefresh(id string, ttl time.Duration) (bool, error) {
	first := false
	err := s.db.Update(func(txn *badger.Txn) error {
		k := []byte(keyUsedRefresh + id)
		_, err := txn.Get(k)
		if err == nil {
			return nil
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		first = true
		return txn.SetEntry(badger.NewEntry(k, []byte{1}).WithTTL(ttl))
	})
	if err != nil {
		return false, fmt.Errorf("redeem refresh token: %w", err)
	}
	return first, nil
}
