package layout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
)

const (
	// walkBatch is how many entries the walk reads from a directory at once when it
	// verifies: an extra file is refused before the rest of a huge directory is read.
	walkBatch = 128
	// maxWalkDepth bounds how deeply directories nest below the bundle root (a bundle
	// needs 2: blobs/sha256/<hex>, petra/<file>).
	maxWalkDepth = 16
)

// walkOptions configure tree.walk. The zero value reads directories in batches, in
// directory order, with no bound on the entries read.
type walkOptions struct {
	// sorted reads each directory whole and visits its entries by name, as fs.WalkDir
	// does (building metadata: the error found first does not depend on the file system).
	sorted bool
	// maxEntries, when > 0, refuses the tree (ErrFileExtra) as soon as more entries than
	// this have been read.
	maxEntries int
}

// walk visits every entry below the root, depth first, parents before children,
// without following symlinks: each entry's FileInfo is an lstat relative to its
// directory, and each directory descended into is opened through the os.Root and
// checked to be the directory that was listed. visit sees slash-separated paths
// relative to the root; an error from it stops the walk. Directories are read
// walkBatch entries at a time (unless opts.sorted), so the memory used does not grow
// with the size of a directory; counts says how many entries were read.
func (t *tree) walk(ctx context.Context, opts walkOptions, counts *walkCounts, visit func(rel string, fi fs.FileInfo) error) error {
	fi, err := t.top.Stat()
	if err != nil {
		return fmt.Errorf("walking bundle %s: %w", t.dir, err)
	}
	return t.walkDir(ctx, opts, counts, ".", fi, 0, visit)
}

// walkCounts are the entries a walk read from directories (into memory) and those it
// handed to visit.
type walkCounts struct {
	read, visited int
}

func (t *tree) walkDir(ctx context.Context, opts walkOptions, counts *walkCounts, rel string, listed fs.FileInfo, depth int, visit func(string, fs.FileInfo) error) error {
	f, err := t.openDir(rel, listed)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		var ents []fs.DirEntry
		var rerr error
		if opts.sorted {
			ents, rerr = f.ReadDir(-1)
			sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
			if rerr == nil {
				rerr = io.EOF
			}
		} else {
			ents, rerr = f.ReadDir(walkBatch)
		}
		counts.read += len(ents)
		for _, e := range ents {
			counts.visited++
			child := e.Name()
			if rel != "." {
				child = rel + "/" + child
			}
			if opts.maxEntries > 0 && counts.visited > opts.maxEntries {
				return &FileError{Path: child, Kind: ErrFileExtra, Detail: fmt.Sprintf("the bundle has more than the %d files and directories the metadata allows", opts.maxEntries)}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			// a directory opened through an os.Root lstats its entries as it reads them
			info, err := e.Info()
			if err != nil {
				return fmt.Errorf("walking bundle %s: %s: %w", t.dir, child, err)
			}
			if err := visit(child, info); err != nil {
				return err
			}
			if !info.IsDir() {
				continue
			}
			if depth+1 > maxWalkDepth {
				return &FileError{Path: child + "/", Kind: ErrFileExtra, Detail: fmt.Sprintf("directories nested deeper than %d", maxWalkDepth)}
			}
			if err := t.walkDir(ctx, opts, counts, child, info, depth+1, visit); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("walking bundle %s: reading %s: %w", t.dir, rel, rerr)
		}
	}
}

// openDir opens the directory rel for listing and checks it is the directory listed
// (same device and inode), so a directory swapped for a symlink or another directory
// after it was listed is refused; O_DIRECTORY|O_NONBLOCK keep a FIFO swapped in from
// blocking the open.
func (t *tree) openDir(rel string, listed fs.FileInfo) (*os.File, error) {
	f, err := t.root.OpenFile(rel, os.O_RDONLY|oDirectory|oNonBlock, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &FileError{Path: rel + "/", Kind: ErrFileMissing, Detail: "disappeared during verification"}
		}
		return nil, &FileError{Path: rel + "/", Kind: ErrUnsafeFile, Detail: "cannot be opened safely", Err: err}
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", rel, err)
	}
	if !fi.IsDir() || !os.SameFile(fi, listed) {
		f.Close()
		return nil, &FileError{Path: rel + "/", Kind: ErrUnsafeFile, Detail: "replaced during verification"}
	}
	return f, nil
}

// scanPaths returns the slash-separated path of every directory above the listed
// files, and how many entries a tree that holds exactly the listed files, the metadata,
// its signature, those directories and the fixed ones has.
func scanPaths(want map[string]*File) (allowedDirs map[string]bool, entries int) {
	allowedDirs = map[string]bool{}
	for p := range want {
		for d := path.Dir(p); d != "." && !allowedDirs[d]; d = path.Dir(d) {
			allowedDirs[d] = true
		}
	}
	dirs := len(allowedDirs)
	for d := range fixedDirs {
		if !allowedDirs[d] {
			dirs++
		}
	}
	return allowedDirs, len(want) + 2 + dirs
}
