#!/usr/bin/env bash
# Release build: static, stripped, reproducible synban binaries for
# linux/amd64 and linux/arm64, a .tar.gz per architecture (binary, README,
# license notice, man page, completions, default policy, systemd units), a
# .deb and an .rpm per architecture (packaging/nfpm.yaml, built by
# packaging/mkpkg with nfpm), and SHA256SUMS over all of them.
#
#   scripts/release.sh [OUTDIR]     (default: dist)
#
# Two runs from the same commit give byte-identical files: every timestamp
# is the commit's time (SOURCE_DATE_EPOCH, unless set), paths are trimmed,
# the Go build ID is empty, archive entries are sorted and owned by 0:0,
# and gzip stores no name or time. Run it in a git checkout.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)
cd "$root"

commit=$(git rev-parse HEAD)
# Tracked files only: the output directory may be inside the tree.
dirty=false
[ -z "$(git status --porcelain --untracked-files=no)" ] || dirty=true
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
# The version, valid for dpkg and rpm: a tag v1.2.3 gives 1.2.3, commits
# after it 1.2.3+git4.<commit>, no tag 0.0~gitYYYYMMDD.<commit>.
if tag=$(git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null); then
	version=${tag#v}
elif tag=$(git describe --tags --abbrev=12 --match 'v[0-9]*' 2>/dev/null); then
	version=$(sed -E 's/^v//; s/-([0-9]+)-g([0-9a-f]+)$/+git\1.\2/' <<<"$tag")
else
	version="0.0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d).${commit:0:12}"
fi
if $dirty; then
	version+="+dirty"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -f "$out"/synban[-_]* "$out/SHA256SUMS"

# -buildvcs=false: the version comes from -X alone, so nothing of the
# checkout's state but the commit reaches the binary.
ldflags="-s -w -buildid= -X main.version=$version -X main.commit=$commit -X main.modified=$dirty"
for arch in amd64 arm64; do
	mkdir -p "$work/$arch"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch GOAMD64=v1 GOARM64=v8.0 GOEXPERIMENT= \
		go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$work/$arch/" ./cmd/synban ./cmd/synban-speaker
done

# The files the binary generates, made by the build for this machine.
host=$(go env GOHOSTARCH)
if [ ! -x "$work/$host/synban" ]; then
	mkdir -p "$work/$host"
	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$work/$host/synban" ./cmd/synban
fi
synban=$work/$host/synban
a=$work/assets
mkdir -p "$a/completions" "$a/systemd"
"$synban" policy default >"$a/policy.toml"
"$synban" man >"$a/synban.8"
gzip -n -9 <"$a/synban.8" >"$a/synban.8.gz"
"$synban" completion bash >"$a/completions/synban.bash"
"$synban" completion zsh >"$a/completions/_synban"
"$synban" completion fish >"$a/completions/synban.fish"
# The units run /usr/sbin/synban on /etc/synban/policy.toml. render loads
# the policy it names, so it renders against this copy of the default and
# the path is replaced afterwards.
"$synban" render systemd --binary /usr/sbin/synban -c "$a/policy.toml" --output-dir "$a/systemd" >/dev/null
sed -i -e "s#-c $a/policy.toml#-c /etc/synban/policy.toml#" \
	-e 's#^\# /etc/systemd/system/#\# /lib/systemd/system/#' "$a"/systemd/*
if grep -r -F "$work" "$a/systemd"; then
	echo "release.sh: a unit still names the build directory" >&2
	exit 1
fi

for arch in amd64 arm64; do
	name=synban-$version-linux-$arch
	d=$work/tar/$name
	mkdir -p "$d/completions" "$d/systemd"
	install -m 0755 "$work/$arch/synban" "$d/synban"
	# `synban upstream` runs the speaker found next to it.
	install -m 0755 "$work/$arch/synban-speaker" "$d/synban-speaker"
	install -m 0644 README.md "$d/README.md"
	install -m 0644 packaging/copyright "$d/LICENSE"
	install -m 0644 "$a/synban.8" "$d/synban.8"
	install -m 0644 "$a/policy.toml" "$d/policy.toml"
	install -m 0644 "$a"/completions/* "$d/completions/"
	install -m 0644 "$a"/systemd/* "$d/systemd/"
	chmod 0755 "$d" "$d/completions" "$d/systemd"
	tar -C "$work/tar" --format=gnu --sort=name --mtime="@$SOURCE_DATE_EPOCH" \
		--owner=0 --group=0 --numeric-owner -cf - "$name" | gzip -n -9 >"$out/$name.tar.gz"

	# nfpm's packages: a module of its own (nfpm stays out of synban's go.mod).
	(cd packaging/mkpkg && go run . -config ../nfpm.yaml -format deb,rpm -o "$out" -commit "$commit" \
		-var ARCH="$arch" -var VERSION="$version" -var BIN="$work/$arch/synban" -var SPEAKER="$work/$arch/synban-speaker" \
		-var ASSETS="$a") >/dev/null
done

(cd "$out" && sha256sum synban[-_]* >SHA256SUMS)
echo "$out: synban $version ($commit)"
cat "$out/SHA256SUMS"
