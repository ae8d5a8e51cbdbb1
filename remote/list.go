package remote

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
)

// ListAll lists every file that matches o, however many: the first page
// (5000 files) tells the total, the remaining pages are fetched
// concurrently (at most Config.ListConcurrency at once), and the result is
// merged in page order and de-duplicated by file id. A 12,001-file
// workspace costs 3 list calls.
//
// Pages taken at different moments can shift when files are added or
// deleted in between; the result is a snapshot, and a file that appears
// twice is kept once (the entry modified last). o.Limit and o.Offset are
// ignored.
func (c *Client) ListAll(ctx context.Context, o ListOptions) ([]ListFile, error) {
	o.Limit, o.Offset = MaxListLimit, 0
	first, err := c.ListFiles(ctx, o)
	if err != nil {
		return nil, err
	}
	limit := first.Limit
	if limit <= 0 || limit > MaxListLimit {
		limit = MaxListLimit
	}
	if len(first.Files) < limit || first.Total <= len(first.Files) {
		return dedupe(first.Files), nil
	}
	pages := make([][]ListFile, (first.Total+limit-1)/limit)
	pages[0] = first.Files
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.listN)
	for i := 1; i < len(pages); i++ {
		g.Go(func() error {
			po := o
			po.Limit, po.Offset = limit, i*limit
			page, err := c.ListFiles(gctx, po)
			if err != nil {
				return fmt.Errorf("list page %d of %d: %w", i+1, len(pages), err)
			}
			pages[i] = page.Files
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var all []ListFile
	for _, p := range pages {
		all = append(all, p...)
	}
	return dedupe(all), nil
}

// dedupe keeps one entry per file id, the one modified last, in the order
// of first appearance.
func dedupe(files []ListFile) []ListFile {
	at := make(map[string]int, len(files))
	out := files[:0:0]
	for _, f := range files {
		if i, ok := at[f.FileID]; ok {
			if f.ModifiedAt.After(out[i].ModifiedAt) {
				out[i] = f
			}
			continue
		}
		at[f.FileID] = len(out)
		out = append(out, f)
	}
	return out
}
