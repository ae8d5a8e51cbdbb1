// Package remote speaks the Evo File API v2 and moves bytes through its
// pre-signed Azure Blob links. It knows nothing of FUSE or of the local cache.
//
// The wire types below mirror the contract (docs: ../shared/EVO-FILE-API.md):
// a version id is an int64 that travels as a JSON string and is kept as an
// opaque string here; ids are UUID strings; times are RFC 3339.
package remote

import "time"

// User is who created, modified or deleted a file (`*_by` fields).
type User struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

// FileLinks holds the links of one listed file.
type FileLinks struct {
	Self string `json:"self"`
}

// ListFile is one file of a listing.
type ListFile struct {
	FileID     string     `json:"file_id"`
	Name       string     `json:"name"`
	Path       string     `json:"path"` // parent folder, with leading and trailing slash: "/", "/A/B/"
	Size       int64      `json:"size"`
	VersionID  string     `json:"version_id"`
	ETag       string     `json:"etag"`
	CreatedAt  time.Time  `json:"created_at"`
	CreatedBy  *User      `json:"created_by"`
	ModifiedAt time.Time  `json:"modified_at"`
	ModifiedBy *User      `json:"modified_by"`
	DeletedAt  *time.Time `json:"deleted_at"`
	DeletedBy  *User      `json:"deleted_by"`
	Links      FileLinks  `json:"links"`
}

// FullPath is the file's path inside the workspace, without a leading slash
// ("A/B/file.txt"): the form the by-path calls take.
func (f *ListFile) FullPath() string { return JoinPath(f.Path, f.Name) }

// ListLinks are the paging links of a listing; Next and Prev are nil at the ends.
type ListLinks struct {
	Self string  `json:"self"`
	Next *string `json:"next"`
	Prev *string `json:"prev"`
}

// ListFilesResponse is one page of a listing.
type ListFilesResponse struct {
	Count  int        `json:"count"`
	Total  int        `json:"total"`
	Offset int        `json:"offset"`
	Limit  int        `json:"limit"`
	Files  []ListFile `json:"files"`
	Links  ListLinks  `json:"links"`
}

// FileVersion is one entry of DownloadFileResponse.Versions.
type FileVersion struct {
	VersionID string    `json:"version_id"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy *User     `json:"created_by"`
	FileID    string    `json:"file_id"`
	Name      string    `json:"name"`
	Path      string    `json:"path"`
	Size      int64     `json:"size"`
	Link      string    `json:"link"`
}

// DownloadFileResponse is a file's metadata with a pre-signed download link.
type DownloadFileResponse struct {
	FileID     string        `json:"file_id"`
	Name       string        `json:"name"`
	Path       string        `json:"path"`
	Size       int64         `json:"size"`
	VersionID  string        `json:"version_id"`
	ETag       string        `json:"etag"`
	CreatedAt  time.Time     `json:"created_at"`
	CreatedBy  *User         `json:"created_by"`
	ModifiedAt time.Time     `json:"modified_at"`
	ModifiedBy *User         `json:"modified_by"`
	DeletedAt  *time.Time    `json:"deleted_at"`
	DeletedBy  *User         `json:"deleted_by"`
	Download   string        `json:"download"`
	Self       string        `json:"self"`
	Versions   []FileVersion `json:"versions"`
}

// FullPath is the file's path inside the workspace, without a leading slash.
func (f *DownloadFileResponse) FullPath() string { return JoinPath(f.Path, f.Name) }

// UploadFileResponse carries the pre-signed upload link of a new version.
type UploadFileResponse struct {
	FileID    string `json:"file_id"`
	Upload    string `json:"upload"`
	VersionID string `json:"version_id"`
}

// Problem is an RFC 7807 problem document as the service sends it.
type Problem struct {
	Type           string   `json:"type"`
	Title          string   `json:"title"`
	Status         int      `json:"status"`
	Detail         string   `json:"detail,omitempty"`
	PermittedRoles []string `json:"permitted_roles,omitempty"`
	YourRole       string   `json:"your_role,omitempty"`
}

// ProblemTypePrefix starts every problem type; the error code follows it.
const ProblemTypePrefix = "https://seequent.com/error-codes/file-api/"

// Error codes of the contract's table.
const (
	CodeBadRequest          = "bad-request"
	CodeInvalidPath         = "files/invalid-path"
	CodeNoUploadInProgress  = "files/no-file-upload-in-progress"
	CodeMissingToken        = "auth/missing-token"
	CodeInvalidToken        = "auth/invalid-token"
	CodeInsufficientRole    = "auth/insufficient-role"
	CodeNotFound            = "files/not-found"
	CodeAlreadyExists       = "files/already-exists"
	CodeGone                = "files/gone"
	CodeValidation          = "validation"
	CodeAPIErrors           = "api-errors"
	CodeMetadataStoreError  = "metadata/store-error"
	CodeBadGateway          = "bad-gateway"
	MaxListLimit            = 5000
	MaxNameBytes            = 255
	MaxPathBytes            = 1024
	DefaultLinkLifetime     = 30 * time.Minute
	UncommittedBlocksExpiry = 7 * 24 * time.Hour
)
