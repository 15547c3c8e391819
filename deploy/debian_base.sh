#!/usr/bin/env bash
# The stage image's base, deploy/Dockerfile's `debian:trixie-slim`, made from Debian's archive:
# a minbase Debian 13 (trixie) root filesystem, as a tarball, slimmed as Docker Hub's
# debian:trixie-slim is (no documentation but copyright files, no manual pages, no
# translations). `make test` (tests/image) and CI make it this way, import it under the name
# the Dockerfile uses, build on it and push what passed: no image registry is needed to build.
#
#   deploy/debian_base.sh OUT.tar      # as root, with Debian's mmdebstrap
#
# Packages come signed from deb.debian.org, checked against the host's debian-archive-keyring
# (and, in the image, against its own); trixie-security and trixie-updates are in its sources,
# so the Dockerfile's `apt-get install` takes security fixes published since the release.
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 OUT.tar" >&2; exit 2; }
slim=()
for pattern in doc groff info linda lintian/overrides locale man; do
    slim+=("--dpkgopt=path-exclude=/usr/share/$pattern/*")
done
slim+=("--dpkgopt=path-include=/usr/share/doc/*/copyright"
       "--dpkgopt=path-include=/usr/share/locale/locale.alias")
# Signed by Debian's keys only, on any host (Ubuntu's apt trusts Ubuntu's), and in the image too.
keys="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]"
[[ -s /usr/share/keyrings/debian-archive-keyring.gpg ]] \
    || { echo "no Debian archive keys: install debian-archive-keyring" >&2; exit 1; }
mmdebstrap --variant=minbase --mode=root --format=tar --quiet \
    "${slim[@]}" --aptopt='Acquire::Languages "none"' \
    trixie "$1" \
    "deb $keys http://deb.debian.org/debian trixie main" \
    "deb $keys http://deb.debian.org/debian trixie-updates main" \
    "deb $keys http://deb.debian.org/debian-security trixie-security main"
