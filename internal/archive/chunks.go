package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/petra-oci/petra-oci/signing"
)

// chunkWriter cuts what is written through it into data chunk files of size bytes in
// dir (writeArchive's streamHash hashes each chunk).
type chunkWriter struct {
	dir    string
	size   int64
	chunks []Chunk
	sync   bool
	f      *os.File
	n      int64 // bytes in the current chunk
	off    int64 // archive bytes before the current chunk
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if c.f == nil {
			if err := c.open(); err != nil {
				return written, err
			}
		}
		k := int(min(int64(len(p)), c.size-c.n))
		n, err := c.f.Write(p[:k])
		c.n += int64(n)
		written += n
		if err != nil {
			return written, err
		}
		p = p[k:]
		if c.n == c.size {
			if err := c.closeChunk(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (c *chunkWriter) open() error {
	name := chunkName(RoleData, len(c.chunks))
	f, err := os.OpenFile(filepath.Join(c.dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	c.f, c.n = f, 0
	c.chunks = append(c.chunks, Chunk{Name: name, Role: RoleData, Offset: c.off})
	return nil
}

func (c *chunkWriter) closeChunk() error {
	if c.f == nil {
		return nil
	}
	var err error
	if c.sync {
		err = c.f.Sync()
	}
	if cerr := c.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing chunk %s: %w", c.f.Name(), err)
	}
	c.chunks[len(c.chunks)-1].Size = c.n
	c.off += c.n
	c.f = nil
	return nil
}

// exportChunks writes the data chunks, the parity chunks and the signed chunk index
// into a temporary sibling of opts.Out, then renames it to opts.Out, which must not
// exist: a chunk directory never mixes chunks of two exports.
func exportChunks(ctx context.Context, src *exportSource, opts ExportOptions, res *ExportResult) (err error) {
	out := filepath.Clean(opts.Out)
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("export: %w: %s (remove it first: a chunk directory holds the chunks of one export only)", ErrExists, out)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("export: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	cw := &chunkWriter{dir: tmp, size: opts.SplitSize, sync: opts.Sync}
	info, sums, err := src.writeArchive(ctx, cw, opts.SplitSize, opts.Zstd)
	if err == nil {
		err = cw.closeChunk()
	}
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if len(sums) != len(cw.chunks) {
		return fmt.Errorf("export: internal error: %d chunks written, %d hashed", len(cw.chunks), len(sums))
	}
	for i := range cw.chunks {
		cw.chunks[i].SHA256 = sums[i]
	}
	ix := &Index{MediaType: IndexMediaType, BundleID: res.BundleID, Sequence: res.Sequence, MetadataDigest: res.MetadataDigest,
		Archive: info, ChunkSize: opts.SplitSize, Chunks: cw.chunks}
	if opts.Parity > 0 {
		p, chunks, err := writeParity(ctx, tmp, cw.chunks, opts.Parity, opts.Sync, opts.Progress)
		if err != nil {
			return fmt.Errorf("export: parity: %w", err)
		}
		ix.Parity, ix.Chunks = p, append(ix.Chunks, chunks...)
	}
	if err := ix.Validate(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := src.key.wait(); err != nil {
		return err
	}
	b, err := EncodeIndex(ix)
	if err != nil {
		return err
	}
	emit(opts.Progress, Event{Phase: "sign", Message: "signing " + IndexFile + " with " + opts.Signer.String()})
	sig, err := signing.SignBlob(ctx, opts.Signer, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("export: signing %s: %w", IndexFile, err)
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{IndexFile, b}, {IndexSignatureFile, sig}} {
		if err := writeFile(filepath.Join(tmp, f.name), f.b, opts.Sync); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	res.Out, res.Archive, res.Index = out, ix.Archive, ix
	emit(opts.Progress, Event{Phase: "done", Done: ix.Archive.Size, Total: ix.Archive.Size,
		Message: fmt.Sprintf("wrote %d data and %d parity chunks to %s", len(cw.chunks), opts.Parity, out)})
	return nil
}

func writeFile(p string, b []byte, sync bool) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && sync {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
