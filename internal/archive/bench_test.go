package archive

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkExportImport exports a 256 MiB bundle in 64 MiB chunks and imports it
// back (every verification), for profiles: go test -bench ExportImport -cpuprofile.
func BenchmarkExportImport(b *testing.B) {
	ctx := context.Background()
	dir := newBundle(b, 7, 64<<20, 64<<20, 64<<20, 64<<20)
	b.Run("export", func(b *testing.B) {
		b.SetBytes(256 << 20)
		for i := range b.N {
			out := filepath.Join(b.TempDir(), "chunks")
			if _, err := Export(ctx, dir, ExportOptions{Out: out, SplitSize: 64 << 20, Signer: testKey}); err != nil {
				b.Fatal(err)
			}
			if i < b.N-1 {
				os.RemoveAll(out)
			}
		}
	})
	chunks := filepath.Join(b.TempDir(), "chunks")
	if _, err := Export(ctx, dir, ExportOptions{Out: chunks, SplitSize: 64 << 20, Signer: testKey}); err != nil {
		b.Fatal(err)
	}
	b.Run("import", func(b *testing.B) {
		b.SetBytes(256 << 20)
		for range b.N {
			out := filepath.Join(b.TempDir(), "bundle")
			if _, err := Import(ctx, chunks, ImportOptions{Out: out, Verify: verifyOpts(b)}); err != nil {
				b.Fatal(err)
			}
			os.RemoveAll(out)
		}
	})
}
