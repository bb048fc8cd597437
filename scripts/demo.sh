#!/usr/bin/env bash
# Sets everything up (idempotent: packages, the default model, sample photos, a release build) and
# runs the main job on the embedded default model: dense features of the sample photos, their PCA
# pictures in out/demo/, and a short report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release --product neco
.build/release/neco demo --out out/demo "$@"
