package remote

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// JoinPath joins a listing's folder ("/", "/A/B/") and a name into a
// workspace path without a leading slash ("A/B/name").
func JoinPath(folder, name string) string {
	folder = strings.Trim(folder, "/")
	if folder == "" {
		return name
	}
	return folder + "/" + name
}

// SplitPath splits a workspace path ("A/B/name", leading slash optional) into
// the listing's folder form ("/A/B/") and the name.
func SplitPath(p string) (folder, name string) {
	p = strings.Trim(p, "/")
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "/", p
	}
	return "/" + p[:i] + "/", p[i+1:]
}

// ValidateName reports whether name is one the service accepts as a file or
// folder name: 1 to 255 bytes of UTF-8 without '/', NUL or control
// characters, and not "." or "..". The error says which rule was broken.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name")
	case len(name) > MaxNameBytes:
		return fmt.Errorf("name is %d bytes, more than %d", len(name), MaxNameBytes)
	case name == "." || name == "..":
		return fmt.Errorf("name %q is reserved", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("name is not valid UTF-8")
	}
	for _, r := range name {
		if r == '/' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("name contains %q", r)
		}
	}
	return nil
}

// ValidatePath checks a workspace path ("A/B/name", no leading slash): at
// most 1024 bytes, each segment a valid name.
func ValidatePath(p string) error {
	if len(p) > MaxPathBytes {
		return fmt.Errorf("path is %d bytes, more than %d", len(p), MaxPathBytes)
	}
	for _, seg := range strings.Split(p, "/") {
		if err := ValidateName(seg); err != nil {
			return err
		}
	}
	return nil
}

// EscapePath percent-encodes each segment of a workspace path for use in a
// by-path URL ("a/new file.txt" becomes "a/new%20file.txt").
func EscapePath(p string) string {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}
