package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/evofs/evofs/remote"
)

// apiError is a failed call, written as an RFC 7807 problem document.
type apiError struct {
	status         int
	code           string // remote.Code*
	detail         string
	permittedRoles []string
	yourRole       string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.detail) }

// problemTitles are the vendor's titles (seeds) for each code.
var problemTitles = map[string]string{
	remote.CodeBadRequest:         "Bad Request.",
	remote.CodeInvalidPath:        "Invalid Path.",
	remote.CodeNoUploadInProgress: "No file upload in progress",
	remote.CodeMissingToken:       "Access Denied.",
	remote.CodeInvalidToken:       "Access Denied.",
	remote.CodeInsufficientRole:   "Insufficient Role.",
	remote.CodeNotFound:           "File Not Found.",
	remote.CodeAlreadyExists:      "Invalid Request.",
	remote.CodeGone:               "The file has been deleted",
	remote.CodeValidation:         "Validation Error.",
	remote.CodeAPIErrors:          "An Error Occurred.",
	remote.CodeMetadataStoreError: "File Metadata Storage Operation Failed.",
	remote.CodeBadGateway:         "Bad Gateway.",
}

func problemf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, detail: fmt.Sprintf(format, args...)}
}

func errBadRequest(format string, args ...any) *apiError {
	return problemf(http.StatusBadRequest, remote.CodeBadRequest, format, args...)
}
func errInvalidPath(format string, args ...any) *apiError {
	return problemf(http.StatusBadRequest, remote.CodeInvalidPath, format, args...)
}
func errNotFound(format string, args ...any) *apiError {
	return problemf(http.StatusNotFound, remote.CodeNotFound, format, args...)
}
func errGone(format string, args ...any) *apiError {
	return problemf(http.StatusGone, remote.CodeGone, format, args...)
}
func errValidation(format string, args ...any) *apiError {
	return problemf(http.StatusUnprocessableEntity, remote.CodeValidation, format, args...)
}
func errConflict(format string, args ...any) *apiError {
	return problemf(http.StatusConflict, remote.CodeAlreadyExists, format, args...)
}

// errStore is a metadata store (Badger) failure.
func errStore(err error) *apiError {
	return problemf(http.StatusBadGateway, remote.CodeMetadataStoreError, "metadata store: %v", err)
}

// errBlobBackend is a blob storage (Azurite) failure.
func errBlobBackend(err error) *apiError {
	return problemf(http.StatusBadGateway, remote.CodeBadGateway, "blob storage: %v", err)
}

func writeProblem(w http.ResponseWriter, e *apiError) {
	p := remote.Problem{
		Type:           remote.ProblemTypePrefix + e.code,
		Title:          problemTitles[e.code],
		Status:         e.status,
		Detail:         e.detail,
		PermittedRoles: e.permittedRoles,
		YourRole:       e.yourRole,
	}
	if p.Title == "" {
		p.Title = http.StatusText(e.status)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
