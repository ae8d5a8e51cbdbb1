package remote

import (
	"context"
	"fmt"
	"io"
)

// Links that renew themselves through the API for the same version: a
// download link through get-by-id with version_id, an upload link through
// update-by-id with version_id (same version, same blob).

// FileGetter gets a file's metadata and download link: Client does.
type FileGetter interface {
	GetFile(ctx context.Context, fileID string, o GetOptions) (*DownloadFileResponse, error)
}

// DownloadLink is a self-renewing link to the version d describes.
func DownloadLink(g FileGetter, d *DownloadFileResponse) *Link {
	id, version := d.FileID, d.VersionID
	return NewLink(d.Download, func(ctx context.Context) (string, error) {
		f, err := g.GetFile(ctx, id, GetOptions{VersionID: version})
		if err != nil {
			return "", fmt.Errorf("renew download link: %w", err)
		}
		return f.Download, nil
	})
}

// UploadLink is a self-renewing link to the unfinished version up
// describes.
func (c *Client) UploadLink(up *UploadFileResponse) *Link {
	id, version := up.FileID, up.VersionID
	return NewLink(up.Upload, func(ctx context.Context) (string, error) {
		u, err := c.UpdateFile(ctx, id, version)
		if err != nil {
			return "", fmt.Errorf("renew upload link: %w", err)
		}
		return u.Upload, nil
	})
}

// UploadPath uploads size bytes of src as a new version of the file at
// path (creating it if need be) and returns the version it made. The
// version is the file's latest once this returns.
func (c *Client) UploadPath(ctx context.Context, b *Blobs, path string, src io.ReaderAt, size int64, o UploadOptions) (*UploadFileResponse, error) {
	up, err := c.UpsertFileByPath(ctx, path, "")
	if err != nil {
		return nil, err
	}
	if err := b.Upload(ctx, c.UploadLink(up), src, size, o); err != nil {
		return nil, fmt.Errorf("upload %s (version %s): %w", path, up.VersionID, err)
	}
	return up, nil
}

// Download writes the whole current version of a file to w.
func (c *Client) Download(ctx context.Context, b *Blobs, fileID string, w io.WriterAt) (*DownloadFileResponse, error) {
	d, err := c.GetFile(ctx, fileID, GetOptions{})
	if err != nil {
		return nil, err
	}
	if err := b.Download(ctx, DownloadLink(c, d), w, d.Size); err != nil {
		return nil, fmt.Errorf("download %s (version %s): %w", d.FullPath(), d.VersionID, err)
	}
	return d, nil
}
