// Command mkpkg builds synban's Debian package (and an RPM from the same
// description) with nfpm, used as a library: it reads packaging/nfpm.yaml,
// substitutes the -var values for its ${NAME}s, writes a one-entry
// changelog for the version built, and packages. It is a module of its own
// so that nfpm and its dependencies stay out of synban's go.mod and binary;
// scripts/release.sh runs it.
//
//	go run . -config ../nfpm.yaml -var ARCH=amd64 -var VERSION=1.0.0 ... -format deb -o DIR
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkpkg:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkpkg", flag.ContinueOnError)
	config := fs.String("config", "", "the nfpm description (packaging/nfpm.yaml)")
	formats := fs.String("format", "deb", "comma-separated packagers: deb, rpm")
	outDir := fs.String("o", ".", "directory to write the packages into")
	commit := fs.String("commit", "", "the commit built, named in the changelog")
	vars := map[string]string{}
	fs.Func("var", "NAME=VALUE: the value of ${NAME} in the description (repeatable)", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want NAME=VALUE, got %q", s)
		}
		vars[k] = v
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *config == "" || fs.NArg() > 0 {
		return errors.New("usage: mkpkg -config FILE [-var NAME=VALUE]... [-format deb,rpm] [-o DIR]")
	}
	// SOURCE_DATE_EPOCH fixes every timestamp (files, changelog, control),
	// so two builds of one commit are byte-identical.
	epoch, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	if err != nil {
		return fmt.Errorf("SOURCE_DATE_EPOCH %q: want the commit time in seconds since 1970: %w", os.Getenv("SOURCE_DATE_EPOCH"), err)
	}
	mtime := time.Unix(epoch, 0).UTC()
	var missing []string
	*outDir, err = filepath.Abs(*outDir)
	if err != nil {
		return err
	}
	cfg, err := nfpm.ParseFileWithEnvMapping(*config, func(name string) string {
		v, ok := vars[name]
		// nfpm asks for its signing passphrases (NFPM_*): none is used.
		if !ok && !strings.HasPrefix(name, "NFPM_") {
			missing = append(missing, name)
		}
		return v
	})
	if err != nil {
		return fmt.Errorf("read %s: %w", *config, err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s uses ${%s}: give it with -var", *config, strings.Join(missing, "}, ${"))
	}
	// The description's relative paths (scripts, copyright) are relative
	// to its directory.
	if err := os.Chdir(filepath.Dir(*config)); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mkpkg-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, format := range strings.Split(*formats, ",") {
		if err := build(cfg, format, *outDir, tmp, *commit, mtime); err != nil {
			return fmt.Errorf("%s: %w", format, err)
		}
	}
	return nil
}

// build writes one package of the description.
func build(cfg nfpm.Config, format, outDir, tmp, commit string, mtime time.Time) error {
	info, err := cfg.Get(format)
	if err != nil {
		return err
	}
	info.MTime = mtime
	info = nfpm.WithDefaults(info)
	if format == "deb" {
		info.Changelog = filepath.Join(tmp, "changelog.yaml")
		if err := writeChangelog(info.Changelog, info, commit, mtime); err != nil {
			return err
		}
	}
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return err
	}
	packager, err := nfpm.Get(format)
	if err != nil {
		return err
	}
	info.Target = filepath.Join(outDir, packager.ConventionalFileName(info))
	f, err := os.Create(info.Target)
	if err != nil {
		return err
	}
	if err := packager.Package(info, f); err != nil {
		f.Close()
		os.Remove(info.Target)
		return fmt.Errorf("package %s: %w", info.Target, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println(info.Target)
	return nil
}

// writeChangelog writes the chglog file of one entry (the version built)
// that nfpm turns into /usr/share/doc/synban/changelog.Debian.gz.
func writeChangelog(path string, info *nfpm.Info, commit string, mtime time.Time) error {
	note := "Release build."
	if commit != "" {
		note = "Release build of commit " + commit + "."
	}
	text := fmt.Sprintf(`- semver: %q
  date: %q
  packager: %q
  deb:
    urgency: medium
    distributions: [unstable]
  changes:
    - note: %q
`, debVersion(info), mtime.Format(time.RFC3339), info.Maintainer, note)
	return os.WriteFile(path, []byte(text), 0o644)
}

// debVersion is the package's Debian version: the upstream version and the
// revision.
func debVersion(info *nfpm.Info) string {
	if info.Release == "" {
		return info.Version
	}
	return info.Version + "-" + info.Release
}
