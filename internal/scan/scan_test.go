package scan_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/petra-oci/petra-oci/internal/registrytest"
	"github.com/petra-oci/petra-oci/internal/sbom"
	"github.com/petra-oci/petra-oci/internal/sbom/sbomtest"
	"github.com/petra-oci/petra-oci/internal/scan"
	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/internal/scan/scantest"
	"github.com/petra-oci/petra-oci/oci"
)

// subject is the image every scan test scans: the amd64 platform of a packed fixture,
// its SBOM generated with syft, and a database built in the test.
type subject struct {
	name   string
	repo   string
	digest digest.Digest
	index  digest.Digest
	sbom   []byte
	db     *scantest.DB
}

// setup packs the fixture, generates the amd64 SBOM and writes the test database.
func setup(t *testing.T) *subject {
	t.Helper()
	b := sbomtest.Pack(t)
	child := b.Child(t, "linux/amd64")
	doc, _, err := sbom.Generate(context.Background(), b.Layout, child, sbom.Options{Name: b.Image.Repo})
	if err != nil {
		t.Fatalf("generating the SBOM: %v", err)
	}
	return &subject{name: b.Name, repo: b.Image.Repo, digest: child.Digest, index: b.Image.Index.Digest, sbom: doc, db: scantest.WriteDB(t)}
}

func loadDB(t *testing.T, s *subject) *scan.DB {
	t.Helper()
	db, info, err := scan.LoadDB(context.Background(), s.db.Archive, 0)
	if err != nil {
		t.Fatalf("LoadDB: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if !info.Built.Equal(s.db.Built) {
		t.Errorf("built = %s, want %s", info.Built, s.db.Built)
	}
	return db
}

func find(ms []scanreport.Match, cve, pkg string) *scanreport.Match {
	for i := range ms {
		if ms[i].CVE == cve && ms[i].Package == pkg {
			return &ms[i]
		}
	}
	return nil
}

func TestScanFindsTheXZBackdoor(t *testing.T) {
	s := setup(t)
	db := loadDB(t, s)
	r, err := scan.Scan(context.Background(), db, s.sbom, scan.Options{Image: s.name, Digest: s.digest, Platform: "linux/amd64"})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	xz := find(r.Matches, scantest.XZBackdoor, "xz")
	if xz == nil {
		t.Fatalf("%s not found in xz; matches: %+v", scantest.XZBackdoor, r.Matches)
	}
	if xz.Version != "5.6.0-r0" || xz.Severity != scanreport.Critical || !slices.Equal(xz.FixVersions, []string{scantest.XZFixedIn}) || !xz.Fixable() {
		t.Errorf("xz match = %+v", xz)
	}
	if !strings.Contains(xz.Namespace, "wolfi") {
		t.Errorf("namespace = %q, want a wolfi namespace", xz.Namespace)
	}
	bb := find(r.Matches, scantest.BusyboxAwk, "busybox")
	if bb == nil || bb.Severity != scanreport.Medium || bb.Fixable() {
		t.Errorf("busybox match = %+v, want medium without a fix", bb)
	}
	if len(r.Matches) != 2 {
		t.Errorf("matches = %+v, want exactly xz and busybox", r.Matches)
	}
	if r.Verdict != scanreport.Pass || r.Counts[scanreport.Critical] != 1 || r.Counts[scanreport.Medium] != 1 {
		t.Errorf("verdict %s counts %v", r.Verdict, r.Counts)
	}
	if !r.DB.Built.Equal(s.db.Built) || r.Scanner.Name != "grype" || r.Scanner.Version != "v0.121.3" {
		t.Errorf("db %+v scanner %+v", r.DB, r.Scanner)
	}
	if r.Distro == "" || !strings.Contains(r.Distro, "wolfi") {
		t.Errorf("distro = %q", r.Distro)
	}
	// the report round-trips through its JSON form
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := scanreport.Parse(b)
	if err != nil || len(back.Matches) != 2 || back.Verdict != scanreport.Pass {
		t.Errorf("round trip: %+v %v", back, err)
	}
}

func TestThresholds(t *testing.T) {
	s := setup(t)
	db := loadDB(t, s)
	cases := []struct {
		name      string
		th        scanreport.Thresholds
		verdict   scanreport.Verdict
		offending []string
	}{
		{"critical fails", scanreport.Thresholds{FailOn: scanreport.Critical}, scanreport.Fail, []string{scantest.XZBackdoor}},
		{"medium fails both", scanreport.Thresholds{FailOn: scanreport.Medium}, scanreport.Fail, []string{scantest.BusyboxAwk, scantest.XZBackdoor}},
		{"fixable fails xz only", scanreport.Thresholds{FailOnFixable: true}, scanreport.Fail, []string{scantest.XZBackdoor}},
		{"warn mode records", scanreport.Thresholds{FailOn: scanreport.High, Mode: scanreport.Warn}, scanreport.WarnViolation, []string{scantest.XZBackdoor}},
		{"no thresholds pass", scanreport.Thresholds{}, scanreport.Pass, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := scan.Scan(context.Background(), db, s.sbom, scan.Options{Image: s.name, Digest: s.digest, Thresholds: tc.th})
			if tc.verdict == scanreport.Fail {
				if !errors.Is(err, scan.ErrThreshold) {
					t.Fatalf("err = %v, want ErrThreshold", err)
				}
			} else if err != nil {
				t.Fatalf("err = %v", err)
			}
			if r.Verdict != tc.verdict || !slices.Equal(r.OffendingCVEs(), tc.offending) {
				t.Errorf("verdict %s offending %v, want %s %v", r.Verdict, r.OffendingCVEs(), tc.verdict, tc.offending)
			}
			if tc.verdict == scanreport.Fail && !strings.Contains(r.Table(), scantest.XZBackdoor) {
				t.Errorf("table lacks the CVE:\n%s", r.Table())
			}
		})
	}
	if _, err := scan.Scan(context.Background(), db, s.sbom, scan.Options{Thresholds: scanreport.Thresholds{FailOn: "severe"}}); !errors.Is(err, oci.ErrInvalid) {
		t.Errorf("bad severity: err = %v", err)
	}
}

func openVEX(status, product, subcomponent string) []byte {
	prod := map[string]any{"@id": product}
	if subcomponent != "" {
		prod["subcomponents"] = []map[string]any{{"@id": subcomponent}}
	}
	doc := map[string]any{
		"@context":  "https://openvex.dev/ns/v0.2.0",
		"@id":       "https://example.com/vex/petra-test-1",
		"author":    "Petra security team",
		"timestamp": "2025-03-01T00:00:00Z",
		"version":   1,
		"statements": []map[string]any{{
			"vulnerability":    map[string]any{"name": scantest.XZBackdoor},
			"products":         []any{prod},
			"status":           status,
			"justification":    "vulnerable_code_not_in_execute_path",
			"impact_statement": "sshd is not in the image, the backdoor has no path to run",
		}},
	}
	if status != "not_affected" {
		delete(doc["statements"].([]map[string]any)[0], "justification")
		delete(doc["statements"].([]map[string]any)[0], "impact_statement")
		if status == "affected" {
			doc["statements"].([]map[string]any)[0]["action_statement"] = "upgrade"
		}
	}
	b, _ := json.Marshal(doc)
	return b
}

func TestVEX(t *testing.T) {
	s := setup(t)
	db := loadDB(t, s)
	name := s.repo[strings.LastIndex(s.repo, "/")+1:]
	imagePURL := fmt.Sprintf("pkg:oci/%s@%s?repository_url=%s", name, s.digest, s.repo)
	xzPURL := "pkg:apk/wolfi/xz@5.6.0-r0?arch=x86_64&distro=wolfi-20230201"
	th := scanreport.Thresholds{FailOn: scanreport.Critical}
	cases := []struct {
		name       string
		doc        []byte
		suppressed bool
	}{
		{"not_affected on the image digest with xz as subcomponent", openVEX("not_affected", s.digest.String(), "pkg:apk/wolfi/xz"), true},
		{"not_affected on the image purl", openVEX("not_affected", imagePURL, ""), true},
		{"fixed on the index", openVEX("fixed", s.index.String(), ""), true},
		{"not_affected on the package as product", openVEX("not_affected", xzPURL, ""), true},
		{"affected does not suppress", openVEX("affected", s.digest.String(), ""), false},
		{"under_investigation does not suppress", openVEX("under_investigation", s.digest.String(), ""), false},
		{"another image", openVEX("not_affected", digest.FromString("other").String(), ""), false},
		{"another subcomponent", openVEX("not_affected", s.digest.String(), "pkg:apk/wolfi/busybox"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := scan.Scan(context.Background(), db, s.sbom, scan.Options{Image: s.name, Digest: s.digest, IndexDigest: s.index, Thresholds: th, VEX: [][]byte{tc.doc}})
			if !tc.suppressed {
				if !errors.Is(err, scan.ErrThreshold) || find(r.Matches, scantest.XZBackdoor, "xz") == nil {
					t.Fatalf("err = %v, matches %+v: want the CVE to stay and fail", err, r.Matches)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v, want the VEX statement to let the image through", err)
			}
			if r.Verdict != scanreport.Pass || find(r.Matches, scantest.XZBackdoor, "xz") != nil {
				t.Fatalf("verdict %s matches %+v", r.Verdict, r.Matches)
			}
			if len(r.Suppressed) != 1 || r.Suppressed[0].By != "vex" || r.Suppressed[0].VEX == nil ||
				r.Suppressed[0].VEX.Document != "https://example.com/vex/petra-test-1" || !strings.Contains(r.Suppressed[0].Reason, "VEX") {
				t.Errorf("suppressed = %+v", r.Suppressed)
			}
			if len(r.VEX) != 1 {
				t.Errorf("VEX documents recorded: %v", r.VEX)
			}
		})
	}
	if _, err := scan.Scan(context.Background(), db, s.sbom, scan.Options{VEX: [][]byte{[]byte(`{"@context":"https://example.com/not-vex"}`)}}); !errors.Is(err, oci.ErrInvalid) {
		t.Errorf("non-OpenVEX document: err = %v", err)
	}
}

func TestExceptions(t *testing.T) {
	s := setup(t)
	db := loadDB(t, s)
	now := time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC)
	th := scanreport.Thresholds{FailOn: scanreport.Critical}
	exc := func(image, expires string) scanreport.Exception {
		return scanreport.Exception{CVE: scantest.XZBackdoor, Image: image, Reason: "sshd not present; tracked in SEC-42", Expires: expires}
	}
	cases := []struct {
		name    string
		e       scanreport.Exception
		applied bool
		expired bool
	}{
		{"unexpired by repository glob", exc(s.repo[:strings.LastIndex(s.repo, "/")]+"/*", "2025-07-01"), true, false},
		{"unexpired by name", exc(s.name, "2025-06-15"), true, false}, // valid through the end of the day
		{"unexpired by digest", exc(s.repo+"@"+s.digest.String(), "2025-06-15T13:00:00Z"), true, false},
		{"expired yesterday", exc("*", "2025-06-14"), false, true},
		{"expired an hour ago", exc("*", "2025-06-15T11:00:00Z"), false, true},
		{"other image", exc("cgr.dev/chainguard/other*", "2026-01-01"), false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := scan.Scan(context.Background(), db, s.sbom, scan.Options{Image: s.name, Digest: s.digest, Thresholds: th,
				Exceptions: []scanreport.Exception{tc.e}, Now: func() time.Time { return now }})
			if !tc.applied {
				if !errors.Is(err, scan.ErrThreshold) || !slices.Equal(r.OffendingCVEs(), []string{scantest.XZBackdoor}) {
					t.Fatalf("err = %v offending %v: want the exception not to apply", err, r.OffendingCVEs())
				}
				if tc.expired != (len(r.Expired) == 1) {
					t.Errorf("expired = %+v, want expired=%v", r.Expired, tc.expired)
				}
				return
			}
			if err != nil || r.Verdict != scanreport.Pass {
				t.Fatalf("err = %v verdict %s: want the exception to let the image through", err, r.Verdict)
			}
			if len(r.Suppressed) != 1 || r.Suppressed[0].By != "exception" || r.Suppressed[0].Reason != tc.e.Reason ||
				r.Suppressed[0].Exception == nil || r.Suppressed[0].Exception.Expires != tc.e.Expires {
				t.Errorf("suppressed = %+v", r.Suppressed)
			}
			if len(r.Exceptions) != 1 {
				t.Errorf("exceptions recorded: %+v", r.Exceptions)
			}
		})
	}
	for _, bad := range []scanreport.Exception{
		{CVE: scantest.XZBackdoor, Image: "*", Reason: "no expiry"},
		{CVE: scantest.XZBackdoor, Image: "*", Expires: "2025-01-01"},
		{CVE: scantest.XZBackdoor, Image: "[", Reason: "bad glob", Expires: "2025-01-01"},
		{Image: "*", Reason: "no cve", Expires: "2025-01-01"},
	} {
		if _, err := scan.Scan(context.Background(), db, s.sbom, scan.Options{Exceptions: []scanreport.Exception{bad}}); !errors.Is(err, oci.ErrInvalid) {
			t.Errorf("exception %+v: err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestLoadDB(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	// the installed directory is used in place, the archive is imported into a work dir
	for _, p := range []string{s.db.Dir, s.db.Archive, filepath.Join(s.db.Dir, "vulnerability.db")} {
		work := t.TempDir()
		db, info, err := scan.LoadDBWithOptions(ctx, scan.DBOptions{Path: p, WorkDir: work})
		if err != nil {
			t.Fatalf("LoadDB(%s): %v", p, err)
		}
		if !info.Built.Equal(s.db.Built) || info.Source != p || info.SchemaVersion == "" {
			t.Errorf("LoadDB(%s) info = %+v", p, info)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if left, _ := os.ReadDir(work); len(left) != 0 {
			t.Errorf("LoadDB(%s) left %d entries in its work dir", p, len(left))
		}
	}
	// age
	old := func() time.Time { return s.db.Built.Add(48 * time.Hour) }
	if _, _, err := scan.LoadDBWithOptions(ctx, scan.DBOptions{Path: s.db.Archive, MaxAge: 24 * time.Hour, Now: old}); !errors.Is(err, scan.ErrDBTooOld) {
		t.Errorf("old database: err = %v, want ErrDBTooOld", err)
	}
	db, _, err := scan.LoadDBWithOptions(ctx, scan.DBOptions{Path: s.db.Archive, MaxAge: 72 * time.Hour, Now: old})
	if err != nil {
		t.Errorf("database within age: %v", err)
	} else {
		db.Close()
	}
	// never a download
	if _, _, err := scan.LoadDB(ctx, "https://grype.anchore.io/databases/v6/latest.json", 0); !errors.Is(err, oci.ErrInvalid) {
		t.Errorf("URL: err = %v, want ErrInvalid", err)
	}
	if _, _, err := scan.LoadDB(ctx, filepath.Join(t.TempDir(), "missing.tar.gz"), 0); !errors.Is(err, scan.ErrDBInvalid) {
		t.Errorf("missing: err = %v, want ErrDBInvalid", err)
	}
	// a database that does not match its import checksum
	dir := t.TempDir()
	for _, f := range []string{"vulnerability.db", "import.json"} {
		b, err := os.ReadFile(filepath.Join(s.db.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "import.json" {
			var im map[string]any
			if err := json.Unmarshal(b, &im); err != nil {
				t.Fatal(err)
			}
			im["digest"] = "xxh64:0123456789abcdef"
			b, _ = json.Marshal(im)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := scan.LoadDB(ctx, dir, 0); !errors.Is(err, scan.ErrDBInvalid) {
		t.Errorf("checksum mismatch: err = %v, want ErrDBInvalid", err)
	}
	// garbage archive
	junk := filepath.Join(t.TempDir(), "db.tar.gz")
	if err := os.WriteFile(junk, []byte("not an archive"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := scan.LoadDB(ctx, junk, 0); !errors.Is(err, scan.ErrDBInvalid) {
		t.Errorf("junk archive: err = %v, want ErrDBInvalid", err)
	}
}

// TestGrypeCLIParity runs the grype CLI of the same version, offline, on the same SBOM
// and database and compares the (vulnerability, package) match sets.
func TestGrypeCLIParity(t *testing.T) {
	grypeBin := registrytest.ToolPath(t, "grype")
	s := setup(t)
	db := loadDB(t, s)
	r, err := scan.Scan(context.Background(), db, s.sbom, scan.Options{Image: s.name, Digest: s.digest})
	if err != nil {
		t.Fatal(err)
	}
	sbomFile := filepath.Join(t.TempDir(), "sbom.spdx.json")
	if err := os.WriteFile(sbomFile, s.sbom, 0o644); err != nil {
		t.Fatal(err)
	}
	// grype reads the database in place; give it its own copy so the test's stays pristine
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "6"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"vulnerability.db", "import.json"} {
		b, err := os.ReadFile(filepath.Join(s.db.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "6", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(grypeBin, "sbom:"+sbomFile, "-o", "json", "-q")
	cmd.Env = append(os.Environ(),
		"GRYPE_DB_CACHE_DIR="+root,
		"GRYPE_DB_AUTO_UPDATE=false",
		"GRYPE_DB_VALIDATE_AGE=false",
		"GRYPE_CHECK_FOR_APP_UPDATE=false",
		"GRYPE_DB_REQUIRE_UPDATE_CHECK=false",
		"XDG_CONFIG_HOME="+t.TempDir(), // no user config
	)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("grype: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("grype: %v", err)
	}
	var doc struct {
		Matches []struct {
			Vulnerability struct {
				ID       string                      `json:"id"`
				Severity string                      `json:"severity"`
				Fix      struct{ Versions []string } `json:"fix"`
			} `json:"vulnerability"`
			Artifact struct {
				Name    string `json:"name"`
				Version string `json:"version"`
			} `json:"artifact"`
		} `json:"matches"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("grype JSON: %v\n%s", err, out)
	}
	if v := registrytest.ToolModuleVersion(t, grypeBin, "github.com/anchore/grype"); v != scan.GrypeModuleVersion {
		t.Fatalf("grype CLI is built from grype %s, the library is %s: run scripts/install-tools.sh", v, scan.GrypeModuleVersion)
	}
	var cli, lib []string
	for _, m := range doc.Matches {
		cli = append(cli, fmt.Sprintf("%s %s@%s %s fix=%v", m.Vulnerability.ID, m.Artifact.Name, m.Artifact.Version,
			strings.ToLower(m.Vulnerability.Severity), m.Vulnerability.Fix.Versions))
	}
	for _, m := range r.Matches {
		fix := m.FixVersions
		if fix == nil {
			fix = []string{}
		}
		lib = append(lib, fmt.Sprintf("%s %s@%s %s fix=%v", m.CVE, m.Package, m.Version, m.Severity, fix))
	}
	slices.Sort(cli)
	slices.Sort(lib)
	if len(lib) == 0 || !slices.Equal(cli, lib) {
		t.Errorf("library matches:\n  %s\ngrype CLI matches:\n  %s", strings.Join(lib, "\n  "), strings.Join(cli, "\n  "))
	}
}

// TestGrypeModuleVersion keeps the library version constant (and the CLI pinned in
// scripts/install-tools.sh) equal to the grype version go.mod requires.
func TestGrypeModuleVersion(t *testing.T) {
	registrytest.CheckPinned(t, "github.com/anchore/grype", scan.GrypeModuleVersion, "GRYPE_VERSION")
}

// TestLoadDBGrypeCacheDir: the directory GRYPE_DB_CACHE_DIR points at (DIR/6/
// vulnerability.db beside DIR/6/import.json, grype's own cache layout) is used in place,
// its checksum checked like an installed database directory's.
func TestLoadDBGrypeCacheDir(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	work := t.TempDir()
	db, info, err := scan.LoadDBWithOptions(ctx, scan.DBOptions{Path: s.db.Root, WorkDir: work})
	if err != nil {
		t.Fatalf("LoadDB(grype cache dir %s): %v", s.db.Root, err)
	}
	defer db.Close()
	if !info.Built.Equal(s.db.Built) || info.Source != s.db.Root || info.Checksum == "" {
		t.Errorf("LoadDB(%s) info = %+v, want the build date, the source and the import.json checksum", s.db.Root, info)
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("LoadDB(%s) imported a copy (%d entries in the work dir): want it used in place", s.db.Root, len(left))
	}
	rep, err := scan.Scan(ctx, db, s.sbom, scan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if find(rep.Matches, scantest.XZBackdoor, "xz") == nil {
		t.Errorf("scan against the cache-dir database: %s not found", scantest.XZBackdoor)
	}
	// the checksum is checked in this layout too
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "6"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(s.db.Dir, "vulnerability.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "6", "vulnerability.db"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "6", "import.json"), []byte(`{"digest":"xxh64:0123456789abcdef","source":"x","client_version":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := scan.LoadDB(ctx, root, 0); !errors.Is(err, scan.ErrDBInvalid) || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("cache dir with a wrong checksum: err = %v, want ErrDBInvalid about the checksum", err)
	}
	// an empty directory still says what it lacks
	if _, _, err := scan.LoadDB(ctx, t.TempDir(), 0); !errors.Is(err, scan.ErrDBInvalid) || !strings.Contains(err.Error(), "holds no vulnerability.db") {
		t.Errorf("empty dir: err = %v", err)
	}
}
