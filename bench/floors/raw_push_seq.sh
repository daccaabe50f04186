#!/usr/bin/env bash
# N raw GitOps writes one after the other in one cached work tree: the sequential floor of the contention bench.
#
#   bench/floors/raw_push_seq.sh CLONE_DIR VERSION MANIFEST_PATH...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
clone=$1
version=$2
shift 2
for file in "$@"; do
  "$here/raw_push.sh" "$clone" "$file" "$version"
done
