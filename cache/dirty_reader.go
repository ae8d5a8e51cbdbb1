package cache

import (
	"context"
	"errors"
	"io"
	"sync"
)

// readerPages bounds the pages a Reader keeps: enough for the few blocks an
// upload stages at once, each read front to back.
const readerPages = 8

// Reader returns an io.ReaderAt over the content for an upload, which reads
// it in small pieces (an HTTP body is read 32 KiB at a time): it reads each
// page once and keeps the last few, so a page costs one store read (one
// checksum) however it is read. ctx bounds every read.
func (d *Dirty) Reader(ctx context.Context) io.ReaderAt {
	return &pageReader{d: d, ctx: ctx, pages: map[int64][]byte{}}
}

type pageReader struct {
	d   *Dirty
	ctx context.Context

	mu    sync.Mutex
	pages map[int64][]byte // GUARDED_BY(mu): page index -> content (up to the size)
	order []int64          // GUARDED_BY(mu): oldest first
}

func (r *pageReader) ReadAt(p []byte, off int64) (int, error) {
	size := r.d.Size()
	if off >= size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off+int64(n) < size {
		pos := off + int64(n)
		idx := pos / PageSize
		page, err := r.page(idx, size)
		if err != nil {
			return n, err
		}
		in := pos - idx*PageSize
		if in >= int64(len(page)) {
			return n, io.ErrUnexpectedEOF
		}
		n += copy(p[n:], page[in:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (r *pageReader) page(idx, size int64) ([]byte, error) {
	r.mu.Lock()
	pg, ok := r.pages[idx]
	r.mu.Unlock()
	if ok {
		return pg, nil
	}
	buf := make([]byte, min(PageSize, size-idx*PageSize))
	if _, err := r.d.ReadAt(r.ctx, buf, idx*PageSize); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pages[idx]; !ok {
		r.pages[idx] = buf
		r.order = append(r.order, idx)
		if len(r.order) > readerPages {
			delete(r.pages, r.order[0])
			r.order = r.order[1:]
		}
	}
	return buf, nil
}
