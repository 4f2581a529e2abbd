#!/usr/bin/env bash
# Builds what diycloud ships (target/release/libpam_diycloud.so and
# target/release/slicectl) with the crate features the test run builds them
# with. Cargo unifies features over the packages of one build: the test
# harness (diycloud-tests) turns on a few in shared crates (nix's signal
# module, rustix's fs through tempfile), so a build of the two shipped
# packages alone makes other binaries than the ones the tests ran, and a
# run that does both compiles the release tree twice. Naming the harness's
# library here (not its binaries) makes both the same bits.
#
#   packaging/build-release.sh      (build-packages.sh and install.sh call it)
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo build --release --locked -p pam_diycloud -p slicectl -p diycloud-tests --lib --bin slicectl
