package scan

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	v6 "github.com/anchore/grype/grype/db/v6"
	v6dist "github.com/anchore/grype/grype/db/v6/distribution"
	v6inst "github.com/anchore/grype/grype/db/v6/installation"
	"github.com/anchore/grype/grype/vulnerability"
	"github.com/spf13/afero"
	"github.com/wagoodman/go-progress"

	"github.com/petra-oci/petra-oci/internal/scan/scanreport"
	"github.com/petra-oci/petra-oci/oci"
)

// Errors of LoadDB.
var (
	// ErrDBTooOld marks a database built longer ago than the allowed maximum age.
	ErrDBTooOld = errors.New("vulnerability database is too old")
	// ErrDBInvalid marks a database that cannot be used (missing, not grype v6, failed
	// checksum).
	ErrDBInvalid = errors.New("vulnerability database is not usable")
)

// DBInfo describes a loaded database.
type DBInfo = scanreport.DBInfo

// DB is an opened, offline vulnerability database. Close it when done: it removes the
// working copy an archive was imported into.
type DB struct {
	provider vulnerability.Provider
	info     DBInfo
	workDir  string
}

// Info describes the database.
func (d *DB) Info() DBInfo { return d.info }

// Close closes the database and removes its working copy, if any.
func (d *DB) Close() error {
	if d == nil {
		return nil
	}
	var errs []error
	if d.provider != nil {
		errs = append(errs, d.provider.Close())
		d.provider = nil
	}
	if d.workDir != "" {
		errs = append(errs, os.RemoveAll(d.workDir))
		d.workDir = ""
	}
	return errors.Join(errs...)
}

// DBOptions configure LoadDBWithOptions.
type DBOptions struct {
	// Path is the database: an archive as `grype db import` takes it (tar.gz, tar.zst,
	// tar.xz ... holding vulnerability.db), a vulnerability.db file, or a directory
	// holding vulnerability.db (an installed grype database directory, with import.json,
	// is used in place; without import.json the file is imported). A grype cache root,
	// what GRYPE_DB_CACHE_DIR points at (DIR/6/vulnerability.db beside DIR/6/import.json),
	// is taken as its DIR/6.
	Path string
	// MaxAge refuses a database built longer ago than this; 0 means no limit.
	MaxAge time.Duration
	// WorkDir is where an archive or a bare database is imported (a fresh folder is made
	// under it and removed by Close); default os.TempDir().
	WorkDir string
	// Now is the clock the age is checked against; default time.Now.
	Now func() time.Time
}

// LoadDB opens the grype v6 database at path, offline (it is never downloaded or
// updated), records its build date and refuses one built longer than maxAge ago
// (0: no limit). See DBOptions.Path for the forms path may take.
func LoadDB(ctx context.Context, path string, maxAge time.Duration) (*DB, DBInfo, error) {
	return LoadDBWithOptions(ctx, DBOptions{Path: path, MaxAge: maxAge})
}

// LoadDBWithOptions is LoadDB with every option.
func LoadDBWithOptions(ctx context.Context, opts DBOptions) (*DB, DBInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, DBInfo{}, err
	}
	if opts.Path == "" {
		return nil, DBInfo{}, fmt.Errorf("%w: no vulnerability database given", oci.ErrInvalid)
	}
	if strings.Contains(opts.Path, "://") {
		return nil, DBInfo{}, fmt.Errorf("%w: vulnerability database %q is a URL: give a local path (databases are never downloaded)", oci.ErrInvalid, opts.Path)
	}
	if opts.MaxAge < 0 {
		return nil, DBInfo{}, fmt.Errorf("%w: negative maximum database age %s", oci.ErrInvalid, opts.MaxAge)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	fi, err := os.Stat(opts.Path)
	if err != nil {
		return nil, DBInfo{}, fmt.Errorf("%w: %v", ErrDBInvalid, err)
	}
	d := &DB{}
	dbDir := opts.Path
	installed := false
	if fi.IsDir() {
		if dbDir, err = dbDirectory(opts.Path); err != nil {
			return nil, DBInfo{}, err
		}
		_, err := os.Stat(filepath.Join(dbDir, v6.ImportMetadataFileName))
		installed = err == nil
	}
	if !installed {
		// Import: unarchive (or copy) into a working folder and hydrate (build indexes),
		// as `grype db import` does. The curator never touches the network for a local path.
		ref := opts.Path
		if fi.IsDir() {
			ref = filepath.Join(dbDir, v6.VulnerabilityDBFileName)
		}
		work, err := os.MkdirTemp(opts.WorkDir, "petra-oci-vulndb-")
		if err != nil {
			return nil, DBInfo{}, fmt.Errorf("creating database work folder: %w", err)
		}
		d.workDir = work
		cur, err := v6inst.NewCurator(v6inst.Config{DBRootDir: work, ValidateChecksum: true}, offlineClient{})
		if err != nil {
			return nil, DBInfo{}, errors.Join(err, d.Close())
		}
		if err := cur.Import(ref); err != nil {
			return nil, DBInfo{}, errors.Join(fmt.Errorf("%w: importing %s: %w", ErrDBInvalid, opts.Path, err), d.Close())
		}
		dbDir = v6inst.Config{DBRootDir: work}.DBDirectoryPath()
	}
	info, err := checkDB(dbDir)
	if err != nil {
		return nil, DBInfo{}, errors.Join(err, d.Close())
	}
	info.Source = opts.Path
	if opts.MaxAge > 0 {
		if age := opts.Now().Sub(info.Built); age > opts.MaxAge {
			return nil, DBInfo{}, errors.Join(fmt.Errorf("%w: %s was built %s (%s ago), the limit is %s", ErrDBTooOld,
				opts.Path, info.Built.UTC().Format(time.RFC3339), age.Round(time.Minute), opts.MaxAge), d.Close())
		}
	}
	rdr, err := v6.NewReader(v6.Config{DBDirPath: dbDir})
	if err != nil {
		return nil, DBInfo{}, errors.Join(fmt.Errorf("%w: %s: %w", ErrDBInvalid, opts.Path, err), d.Close())
	}
	d.provider = v6.NewVulnerabilityProvider(rdr)
	d.info = info
	return d, info, nil
}

// dbDirectory returns the folder of dir that holds vulnerability.db: dir itself (an
// installed database directory, e.g. ~/.cache/grype/db/6), or dir/6 when dir is a grype
// cache root, what GRYPE_DB_CACHE_DIR points at (grype keeps schema v6 under "6").
func dbDirectory(dir string) (string, error) {
	for _, d := range []string{dir, v6inst.Config{DBRootDir: dir}.DBDirectoryPath()} {
		fi, err := os.Lstat(filepath.Join(d, v6.VulnerabilityDBFileName))
		switch {
		case err == nil && fi.Mode().IsRegular():
			return d, nil
		case err == nil:
			return "", fmt.Errorf("%w: %s is not a regular file", ErrDBInvalid, filepath.Join(d, v6.VulnerabilityDBFileName))
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("%w: %v", ErrDBInvalid, err)
		}
	}
	return "", fmt.Errorf("%w: %s holds no %s (nor does %s, the grype cache layout)", ErrDBInvalid, dir,
		v6.VulnerabilityDBFileName, v6inst.Config{DBRootDir: dir}.DBDirectoryPath())
}

// checkDB reads the database's description and, when import.json is there, checks the
// database file against the checksum recorded at import.
func checkDB(dir string) (DBInfo, error) {
	file := filepath.Join(dir, v6.VulnerabilityDBFileName)
	desc, err := v6.ReadDescription(file)
	if err != nil {
		return DBInfo{}, fmt.Errorf("%w: %s: %w", ErrDBInvalid, file, err)
	}
	if desc == nil || desc.Built.IsZero() {
		return DBInfo{}, fmt.Errorf("%w: %s has no build date", ErrDBInvalid, file)
	}
	info := DBInfo{Built: desc.Built.Time.UTC(), SchemaVersion: desc.SchemaVersion.String()}
	im, err := v6.ReadImportMetadata(afero.NewOsFs(), dir)
	switch {
	case err == nil && im != nil:
		sum, err := v6.CalculateDBDigest(afero.NewOsFs(), file)
		if err != nil {
			return DBInfo{}, fmt.Errorf("%w: %s: %w", ErrDBInvalid, file, err)
		}
		if sum != im.Digest {
			return DBInfo{}, fmt.Errorf("%w: %s does not match the checksum in %s (%s, want %s)", ErrDBInvalid, file, v6.ImportMetadataFileName, sum, im.Digest)
		}
		info.Checksum = sum
	case errors.Is(err, fs.ErrNotExist):
	default:
		return DBInfo{}, fmt.Errorf("%w: %s: %w", ErrDBInvalid, dir, err)
	}
	return info, nil
}

// offlineClient is the grype distribution client LoadDB gives the curator: it refuses
// every network operation, so nothing can ever be downloaded.
type offlineClient struct{}

var errOffline = errors.New("petra-oci never downloads vulnerability databases")

func (offlineClient) Latest() (*v6dist.LatestDocument, error) { return nil, errOffline }
func (offlineClient) IsUpdateAvailable(*v6.Description) (*v6dist.Archive, error) {
	return nil, errOffline
}
func (offlineClient) ResolveArchiveURL(v6dist.Archive) (string, error) { return "", errOffline }
func (offlineClient) Download(string, string, *progress.Manual) (string, error) {
	return "", errOffline
}
