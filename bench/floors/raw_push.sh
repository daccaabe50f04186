#!/usr/bin/env bash
# The raw floor of one GitOps write, done by hand in a cached work tree (a clone kept between runs):
# fetch, fast-forward, sed the manifest's targetRevision, commit, push. No retry: it assumes no other writer.
#
#   bench/floors/raw_push.sh CLONE_DIR MANIFEST_PATH [VERSION] [BRANCH]
#
# VERSION defaults to a fresh one per call (0.0.<nanoseconds>), so hyperfine can repeat it.
set -euo pipefail
clone=$1
file=$2
version=${3:-0.0.$(date +%s%N)}
branch=${4:-main}
cd "$clone"
git fetch -q origin "$branch"
git merge -q --ff-only FETCH_HEAD
sed -i -E "s/^([[:space:]]*targetRevision:).*/\1 \"$version\"/" "$file"
git commit -q -a -m "raw: $file -> $version"
git push -q origin "HEAD:$branch"
