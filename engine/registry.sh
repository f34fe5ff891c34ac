#!/usr/bin/env bash
# The CNCF distribution registry for the image tests: engine/gotool.sh builds and caches it.
#   engine/registry.sh build | path | key | clean
exec "$(dirname "${BASH_SOURCE[0]}")/gotool.sh" "${1:-}" registry
