// Package scantest builds small grype v6 vulnerability databases for tests, in the
// test, with real CVE records that match the packages of the fixture images
// (internal/fixture: Wolfi, xz 5.6.0-r0, busybox 1.36.1-r2). Nothing is downloaded.
package scantest

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v6 "github.com/anchore/grype/grype/db/v6"
	"github.com/spf13/afero"
)

// CVEs of the test database.
const (
	// XZBackdoor is CVE-2024-3094, the xz/liblzma backdoor in upstream 5.6.0 and 5.6.1
	// (NVD: CVSS 3.1 10.0, critical). Wolfi's advisory fixes it in xz 5.6.1-r2.
	XZBackdoor = "CVE-2024-3094"
	// XZFixedIn is the Wolfi fix version recorded for XZBackdoor.
	XZFixedIn = "5.6.1-r2"
	// BusyboxAwk is CVE-2023-42366, a heap overflow in busybox awk (NVD: CVSS 3.1 5.5,
	// medium). The test database records it as not fixed for Wolfi's busybox, so it
	// is a finding without a fix.
	BusyboxAwk = "CVE-2023-42366"
)

// DB is a test database on disk.
type DB struct {
	// Root is a grype cache root: GRYPE_DB_CACHE_DIR for the grype CLI.
	Root string
	// Dir is Root/6, the installed database directory (vulnerability.db + import.json).
	Dir string
	// Archive is a tar.gz holding vulnerability.db, the form `grype db import` takes.
	Archive string
	// Built is the database's build time (as its metadata records it).
	Built time.Time
}

// WriteDB builds the test database under a new temporary folder. Failures end the test.
func WriteDB(t testing.TB) *DB {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "6")
	w, err := v6.NewWriter(v6.Config{DBDirPath: dir})
	if err != nil {
		t.Fatalf("scantest: new grype db writer: %v", err)
	}
	published := time.Date(2024, 3, 29, 17, 15, 21, 0, time.UTC)
	modified := time.Date(2025, 2, 6, 18, 15, 0, 0, time.UTC)
	wolfi := &v6.Provider{ID: "wolfi", Version: "1", Processor: "petra-oci scantest", DateCaptured: &modified}
	xz := &v6.VulnerabilityHandle{
		Name:          XZBackdoor,
		Status:        v6.VulnerabilityActive,
		PublishedDate: &published,
		ModifiedDate:  &modified,
		ProviderID:    wolfi.ID,
		Provider:      wolfi,
		BlobValue: &v6.VulnerabilityBlob{
			ID: XZBackdoor,
			Description: "Malicious code was discovered in the upstream tarballs of xz, starting with version 5.6.0. " +
				"Through a series of complex obfuscations, the liblzma build process extracts a prebuilt object file " +
				"from a disguised test file existing in the source code, which is then used to modify specific functions " +
				"in the liblzma code.",
			References: []v6.Reference{
				{URL: "https://nvd.nist.gov/vuln/detail/CVE-2024-3094"},
				{URL: "https://github.com/wolfi-dev/advisories/blob/main/xz.advisories.yaml"},
			},
			Severities: []v6.Severity{{Scheme: v6.SeveritySchemeCHMLN, Value: "critical", Rank: 1}},
		},
	}
	busybox := &v6.VulnerabilityHandle{
		Name:          BusyboxAwk,
		Status:        v6.VulnerabilityActive,
		PublishedDate: ptr(time.Date(2023, 11, 27, 23, 15, 7, 0, time.UTC)),
		ModifiedDate:  &modified,
		ProviderID:    wolfi.ID,
		Provider:      wolfi,
		BlobValue: &v6.VulnerabilityBlob{
			ID:          BusyboxAwk,
			Description: "A heap-buffer-overflow was discovered in BusyBox v.1.36.1 in the next_token function at awk.c:1159.",
			References:  []v6.Reference{{URL: "https://nvd.nist.gov/vuln/detail/CVE-2023-42366"}},
			Severities:  []v6.Severity{{Scheme: v6.SeveritySchemeCHMLN, Value: "medium", Rank: 1}},
		},
	}
	if err := w.AddVulnerabilities(xz, busybox); err != nil {
		t.Fatalf("scantest: adding vulnerabilities: %v", err)
	}
	os := func() *v6.OperatingSystem {
		return &v6.OperatingSystem{Name: "wolfi", ReleaseID: "wolfi", LabelVersion: "rolling"}
	}
	err = w.AddAffectedPackages(
		&v6.AffectedPackageHandle{
			Vulnerability:   xz,
			OperatingSystem: os(),
			Package:         &v6.Package{Ecosystem: "apk", Name: "xz"},
			BlobValue: &v6.PackageBlob{
				CVEs: []string{XZBackdoor},
				Ranges: []v6.Range{{
					Version: v6.Version{Type: "apk", Constraint: "< " + XZFixedIn},
					Fix:     &v6.Fix{Version: XZFixedIn, State: v6.FixedStatus},
				}},
			},
		},
		&v6.AffectedPackageHandle{
			Vulnerability:   busybox,
			OperatingSystem: os(),
			Package:         &v6.Package{Ecosystem: "apk", Name: "busybox"},
			BlobValue: &v6.PackageBlob{
				CVEs:   []string{BusyboxAwk},
				Ranges: []v6.Range{{Version: v6.Version{Type: "apk"}, Fix: &v6.Fix{State: v6.NotFixedStatus}}},
			},
		},
	)
	if err != nil {
		t.Fatalf("scantest: adding affected packages: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("scantest: closing the db: %v", err)
	}
	desc, err := v6.ReadDescription(filepath.Join(dir, v6.VulnerabilityDBFileName))
	if err != nil {
		t.Fatalf("scantest: reading the db description: %v", err)
	}
	db := &DB{Root: root, Dir: dir, Archive: filepath.Join(t.TempDir(), "vulnerability-db_v6_test.tar.gz"), Built: desc.Built.Time.UTC()}
	if err := writeArchive(db.Archive, filepath.Join(dir, v6.VulnerabilityDBFileName)); err != nil {
		t.Fatalf("scantest: archiving the db: %v", err)
	}
	if _, err := v6.WriteImportMetadata(afero.NewOsFs(), dir, "petra-oci scantest"); err != nil {
		t.Fatalf("scantest: writing import metadata: %v", err)
	}
	return db
}

func ptr[T any](v T) *T { return &v }

// writeArchive writes a tar.gz holding dbFile as vulnerability.db.
func writeArchive(dst, dbFile string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	src, err := os.Open(dbFile)
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Name: v6.VulnerabilityDBFileName, Mode: 0o644, Size: fi.Size(), ModTime: fi.ModTime(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, src); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return f.Close()
}
