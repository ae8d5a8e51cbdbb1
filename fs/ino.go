package fs

import "github.com/cespare/xxhash/v2"

// Inode numbers are derived from identity, never allocated: a file's from
// its file id and version id (stable across refreshes, renames and
// remounts; a new version is a new inode, as a new generation is in
// gcsfuse, so the kernel's page cache never mixes two versions), a
// folder's from its path. The kernel sees the same number in readdir and
// lookup.

const rootIno = 1

func fileIno(fileID, versionID string) uint64 {
	return fixIno(xxhash.Sum64String("f\x00" + fileID + "\x00" + versionID))
}

func dirIno(path string) uint64 {
	if path == "" {
		return rootIno
	}
	return fixIno(xxhash.Sum64String("d\x00" + path))
}

// fixIno keeps clear of 0 (invalid), 1 (the root) and go-fuse's automatic
// numbers (from 2^63 up).
func fixIno(h uint64) uint64 {
	h &^= 1 << 63
	if h < 2 {
		h += 2
	}
	return h
}
