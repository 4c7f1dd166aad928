package admission

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// WriteDir writes the files as the directory dir, whole or not at all: into a new
// temporary sibling first (each file synced), then renamed into place. An existing dir
// is replaced only when it holds nothing but YAML files (a previous output); anything
// else in it (subdirectories, other files, symlinks) refuses the write.
func WriteDir(dir string, files *Files) (err error) {
	if files == nil || len(files.Files) == 0 {
		return fmt.Errorf("%w: nothing to write", ErrInvalidOptions)
	}
	dir = filepath.Clean(dir)
	parent, base := filepath.Dir(dir), filepath.Base(dir)
	if base == "." || base == string(filepath.Separator) {
		return fmt.Errorf("%w: output directory %q", ErrInvalidOptions, dir)
	}
	replace := false
	if fi, err := os.Lstat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%w: %s exists and is not a directory", ErrInvalidOptions, dir)
		}
		if err := previousOutput(dir); err != nil {
			return err
		}
		replace = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	for _, f := range files.Files {
		if f.Name != filepath.Base(f.Name) || !strings.HasSuffix(f.Name, ".yaml") {
			return fmt.Errorf("%w: file name %q", ErrInvalidOptions, f.Name)
		}
		if err := writeSynced(filepath.Join(tmp, f.Name), f.Data); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if !replace {
		if err := os.Rename(tmp, dir); err != nil {
			return err
		}
		return syncDir(parent)
	}
	// swap: the old output goes aside, the new one takes its name, the old one goes
	old, err := os.MkdirTemp(parent, "."+base+".old-")
	if err != nil {
		return err
	}
	if err := os.Remove(old); err != nil {
		return err
	}
	if err := os.Rename(dir, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if rerr := os.Rename(old, dir); rerr != nil {
			return fmt.Errorf("%w (and restoring %s from %s: %v)", err, dir, old, rerr)
		}
		return err
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

// previousOutput refuses a directory that holds anything but regular .yaml files.
func previousOutput(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".yaml") {
			return fmt.Errorf("%w: %s exists and holds %s, which petra-oci admission does not write: give an empty or new directory", ErrInvalidOptions, dir, e.Name())
		}
	}
	return nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
