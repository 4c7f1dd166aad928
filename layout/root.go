package layout

import "fmt"

// Root is a bundle directory resolved once. OpenRoot cleans the path, refuses a root
// that is a symlink or not a directory, and opens it as an os.Root; every read after
// that (the metadata, its signature, the verification walk, the pinned files) goes
// through that one handle, never through the path again, so replacing or re-linking
// the directory afterwards changes nothing that is read. A Root is safe for
// concurrent use; Close it when done.
type Root struct {
	t *tree
}

// OpenRoot opens the bundle directory dir. dir is cleaned first (DIR and DIR/ are the
// same) and lstat'ed without following a final symlink: a symlink, or anything but a
// directory, is refused with a *FileError wrapping ErrUnsafeFile. The directory opened
// must be the one lstat saw.
func OpenRoot(dir string) (*Root, error) {
	t, err := openTree(dir)
	if err != nil {
		return nil, err
	}
	return &Root{t: t}, nil
}

// Dir returns the cleaned path the root was opened from (for messages: nothing is read
// through it).
func (r *Root) Dir() string { return r.t.dir }

// Close releases the directory handle.
func (r *Root) Close() error {
	if err := r.t.close(); err != nil {
		return fmt.Errorf("closing bundle %s: %w", r.t.dir, err)
	}
	return nil
}

// ReadMetadataBytes reads petra/metadata.json: a regular file reached through no
// symlink, at most MaxMetadataBytes (larger is an error wrapping oci.ErrTooLarge; a
// missing file one wrapping fs.ErrNotExist). Parse the bytes only after their signature
// is verified.
func (r *Root) ReadMetadataBytes() ([]byte, error) {
	return r.t.readBundleFile(MetadataPath, MaxMetadataBytes)
}

// ReadSignatureBytes reads petra/metadata.sigstore.json like ReadMetadataBytes, at most
// MaxSignatureBytes.
func (r *Root) ReadSignatureBytes() ([]byte, error) {
	return r.t.readBundleFile(SignaturePath, MaxSignatureBytes)
}
