#!/usr/bin/env bash
# Bazel's --workspace_status_command (.bazelrc): the commit a build is of,
# for `--version` and GET /api/version (common/version.h). A tree with
# uncommitted changes says so ("-dirty"); outside git, "unknown".
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [[ "$commit" != unknown ]] && ! git diff --quiet HEAD 2>/dev/null; then
  commit="$commit-dirty"
fi
echo "STABLE_MODELPLANE_COMMIT $commit"
echo "MODELPLANE_BUILD_DATE $(date -u +%Y-%m-%dT%H:%M:%SZ)"
