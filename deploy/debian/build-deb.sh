#!/usr/bin/env bash
# Builds the Debian package: target/debian/sinkhole_<version>-1_<arch>.deb (the path is printed last).
#
#   deploy/debian/build-deb.sh                 # needs cargo-deb: cargo install cargo-deb --locked
#   deploy/debian/build-deb.sh --profile dev --no-build
#                                              # the binary `cargo test` built: CI checks the
#                                              # package's layout without a second build
#
# 1. the binary that ships: cargo build --profile dist (release, no symbols);
# 2. every other file, written by that binary as it installs itself, into target/deb-root with
#    --prefix /usr (unit with ExecStart=/usr/bin/sinkhole, config, lists, logrotate, completions,
#    man pages): one source of truth, src/install/layout.rs, which Cargo.toml's asset list mirrors;
# 3. cargo deb --no-build --profile dist packs them as [package.metadata.deb] in Cargo.toml says.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v cargo-deb >/dev/null 2>&1 || {
  echo "build-deb.sh: cargo-deb is missing: cargo install cargo-deb --locked" >&2
  exit 1
}
profile=dist
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs a name}; shift 2 ;;
    # Pack the binary already built (CI: the one `cargo test` built, whose dependencies carry the
    # dev-dependencies' features, so that a plain `cargo build` would compile them all again).
    --no-build) build=0; shift ;;
    *) echo "build-deb.sh: unknown argument $1 (--profile NAME, --no-build)" >&2; exit 2 ;;
  esac
done
# Cargo's directory for a profile: dev builds into debug/.
dir=$profile
if [ "$profile" = dev ]; then dir=debug; fi
if [ "$build" = 1 ]; then
  cargo build --profile "$profile" --locked -p sinkhole
elif [ ! -x "${CARGO_TARGET_DIR:-target}/$dir/sinkhole" ]; then
  echo "build-deb.sh: --no-build, but ${CARGO_TARGET_DIR:-target}/$dir/sinkhole is not built" >&2
  exit 1
fi
# The stage is where Cargo.toml's assets name it (target/deb-root, beside Cargo.toml) even when the
# build goes elsewhere (CARGO_TARGET_DIR): cargo-deb finds the binary there by itself.
stage=target/deb-root
# A fresh tree each time, so that a file the layout no longer has is not packed.
rm -rf "$stage"
"${CARGO_TARGET_DIR:-target}/$dir/sinkhole" install --destdir "$stage" --prefix /usr >/dev/null
# The binary comes from target/$dir through cargo-deb (which knows it as built), not from the stage.
rm -f "$stage/usr/bin/sinkhole"
deb=$(cargo deb --no-build --profile "$profile" --locked --quiet 2>/dev/null | tail -n 1) || {
  cargo deb --no-build --profile "$profile" --locked  # again, loud, to show why
  exit 1
}
echo "$deb"
