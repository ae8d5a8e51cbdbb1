package cache

import (
	"context"
	"io"
)

// Reader returns an io.ReaderAt over the content for an upload (which
// reads it in small pieces): filled pages are read from the content file,
// the rest from the base. ctx bounds every read.
func (d *Dirty) Reader(ctx context.Context) io.ReaderAt {
	return dirtyReader{d: d, ctx: ctx}
}

type dirtyReader struct {
	d   *Dirty
	ctx context.Context
}

func (r dirtyReader) ReadAt(p []byte, off int64) (int, error) {
	return r.d.ReadAt(r.ctx, p, off)
}
