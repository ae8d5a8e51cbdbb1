package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	azblobblob "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
)

// blobStore talks to Azurite with the account's shared key: it creates the
// container, signs links, reads blob properties to settle versions, and
// uploads seed content. It is immutable after newBlobStore and safe for
// concurrent use.
type blobStore struct {
	endpoint  *url.URL // account URL, e.g. http://127.0.0.1:10000/devstoreaccount1
	container string
	cred      *azblob.SharedKeyCredential
	client    *azblob.Client
	transport *http.Transport // shared with the proxy
}

func newBlobStore(endpoint, account, key, container string) (*blobStore, error) {
	u, err := url.Parse(strings.TrimRight(endpoint, "/"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("blob endpoint %q is not an absolute URL", endpoint)
	}
	cred, err := azblob.NewSharedKeyCredential(account, key)
	if err != nil {
		return nil, fmt.Errorf("blob credentials: %w", err)
	}
	tr := &http.Transport{
		Proxy:                 nil, // Azurite is local: never through an HTTP proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	client, err := azblob.NewClientWithSharedKeyCredential(u.String(), cred, &azblob.ClientOptions{
		ClientOptions: azcore.ClientOptions{
			Transport: &http.Client{Transport: tr},
			Retry:     policy.RetryOptions{MaxRetries: 2, RetryDelay: 50 * time.Millisecond, MaxRetryDelay: 500 * time.Millisecond},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("blob client: %w", err)
	}
	return &blobStore{endpoint: u, container: container, cred: cred, client: client, transport: tr}, nil
}

// ensureContainer creates the container unless it exists.
func (b *blobStore) ensureContainer(ctx context.Context) error {
	_, err := b.client.CreateContainer(ctx, b.container, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists) {
		return fmt.Errorf("create container %s at %s: %w", b.container, b.endpoint.Redacted(), err)
	}
	return nil
}

// link signs a blob-scoped SAS for blob and returns the URL a client uses:
// the same path as on Azurite (path-style, so the signature holds) under the
// emulator's hub URL.
func (b *blobStore) link(hub, blob, perms string, ttl time.Duration) (string, error) {
	qp, err := sas.BlobSignatureValues{
		ExpiryTime:    time.Now().UTC().Add(ttl),
		Permissions:   perms,
		ContainerName: b.container,
		BlobName:      blob,
	}.SignWithSharedKey(b.cred)
	if err != nil {
		return "", fmt.Errorf("sign link for %s: %w", blob, err)
	}
	return hub + b.endpoint.Path + "/" + b.container + "/" + escapeBlob(blob) + "?" + qp.Encode(), nil
}

func escapeBlob(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

var (
	readPerms   = (&sas.BlobPermissions{Read: true}).String()
	uploadPerms = (&sas.BlobPermissions{Read: true, Create: true, Write: true}).String()
)

// blobState is what settling needs to know of a blob.
type blobState struct {
	committed bool
	size      int64
	etag      string
	modified  time.Time
}

// state reads a blob's properties: not committed if it does not exist (only
// uncommitted blocks) or a copy into it is still under way.
func (b *blobStore) state(ctx context.Context, blob string) (blobState, error) {
	props, err := b.client.ServiceClient().NewContainerClient(b.container).NewBlobClient(blob).GetProperties(ctx, nil)
	if err != nil {
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == http.StatusNotFound {
			return blobState{}, nil
		}
		return blobState{}, fmt.Errorf("get properties of %s: %w", blob, err)
	}
	if props.CopyStatus != nil && *props.CopyStatus != azblobblob.CopyStatusTypeSuccess {
		return blobState{}, nil
	}
	st := blobState{committed: true}
	if props.ContentLength != nil {
		st.size = *props.ContentLength
	}
	if props.ETag != nil {
		st.etag = string(*props.ETag)
	}
	if props.LastModified != nil {
		st.modified = props.LastModified.UTC()
	}
	return st, nil
}

// uploadBytes writes a whole blob (seeding).
func (b *blobStore) uploadBytes(ctx context.Context, blob string, data []byte) (blobState, error) {
	bb := b.client.ServiceClient().NewContainerClient(b.container).NewBlockBlobClient(blob)
	resp, err := bb.Upload(ctx, readSeekNopCloser{bytes.NewReader(data)}, nil)
	if err != nil {
		return blobState{}, fmt.Errorf("upload %s: %w", blob, err)
	}
	return uploadState(resp.ETag, resp.LastModified, int64(len(data))), nil
}

// uploadFile writes a whole blob from a local file (seeding).
func (b *blobStore) uploadFile(ctx context.Context, blob string, f *os.File, size int64) (blobState, error) {
	bb := b.client.ServiceClient().NewContainerClient(b.container).NewBlockBlobClient(blob)
	resp, err := bb.UploadFile(ctx, f, &blockblob.UploadFileOptions{Concurrency: 4})
	if err != nil {
		return blobState{}, fmt.Errorf("upload %s: %w", blob, err)
	}
	return uploadState(resp.ETag, resp.LastModified, size), nil
}

func uploadState(etag *azcore.ETag, mod *time.Time, size int64) blobState {
	st := blobState{committed: true, size: size, modified: time.Now().UTC()}
	if etag != nil {
		st.etag = string(*etag)
	}
	if mod != nil {
		st.modified = mod.UTC()
	}
	return st
}

type readSeekNopCloser struct{ *bytes.Reader }

func (readSeekNopCloser) Close() error { return nil }
