// Package packaging holds synban's release and package build and its
// tests: scripts/release.sh makes the reproducible archives, and
// packaging/mkpkg (a module of its own, so that nfpm stays out of synban's
// go.mod) the .deb and .rpm from nfpm.yaml with the maintainer scripts in
// scripts/. The tests build a release twice and compare, run lintian on the
// .deb, and install it with the real dpkg.
package packaging
