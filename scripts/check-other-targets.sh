#!/usr/bin/env bash
# Type-checks the crate for systems other than Linux (macOS on x86-64 and
# arm64, FreeBSD), whose code paths (the store's file backing, the lock's
# waits without futexes, process checks without /proc) CI cannot compile:
# rustup installs no standard library for them here. This builds one from
# source instead, with `-Zbuild-std`, from Debian's `rust-src` package of
# the same rustc version (trixie-backports), and checks a copy of the crate
# without jemalloc, whose build script would need a C compiler for the
# target. Nothing is linked or run. It needs curl, xz, dpkg-deb, network
# access to deb.debian.org, a rustc whose version trixie-backports has a
# rust-src of, and cargo's __CARGO_TESTS_ONLY_SRC_ROOT (meant for cargo's
# own tests) to point -Zbuild-std at that source.
#
#   scripts/check-other-targets.sh [TARGET ...]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd)

version=$(rustc --version | awk '{print $2}')
work="$root/target/other-targets"
src="$work/rust-src-$version"
mkdir -p "$work"

if [ ! -d "$src/library" ]; then
  index="https://deb.debian.org/debian/dists/trixie-backports/main/binary-all/Packages.xz"
  # The package's file name and SHA-256, as the index lists them.
  read -r file sha256 < <(curl -fsS "$index" | xz -dc | awk -v v="$version+" '
    /^Package: rust-src$/ { p = 1 }
    p && /^Version:/ { ok = index($2, v) == 1 }
    p && ok && /^Filename:/ { file = $2 }
    p && ok && /^SHA256:/ { sha = $2 }
    /^$/ { if (p && ok && file != "" && sha != "" && !found) { print file, sha; found = 1 } p = 0; ok = 0; file = ""; sha = "" }') || true
  [ -n "${file:-}" ] || { echo "no rust-src $version in Debian trixie-backports" >&2; exit 1; }
  curl -fsS -o "$work/rust-src.deb" "https://deb.debian.org/debian/$file"
  echo "$sha256  $work/rust-src.deb" | sha256sum -c --quiet -
  rm -rf "$work/deb" && mkdir -p "$work/deb"
  dpkg-deb -x "$work/rust-src.deb" "$work/deb"
  mv "$work/deb/usr/src/rustc-$version" "$src"
  rm -rf "$work/deb" "$work/rust-src.deb"
fi

crate="$work/crate"
rm -rf "$crate" && mkdir -p "$crate"
cp -r "$root/Cargo.toml" "$root/Cargo.lock" "$root/build.rs" "$root/src" "$crate/"
# Without jemalloc (and the benchmarks' dev-dependencies): `--cfg fuzzing`
# below compiles src/alloc.rs without it, as for the fuzz targets.
awk '/^\[target\.'"'"'cfg\(not\(target_env = "msvc"\)\)'"'"'\.dependencies\]/ { skip = 1; next }
     /^\[dev-dependencies\]/ { exit }
     /^\[/ { skip = 0 }
     !skip' "$root/Cargo.toml" >"$crate/Cargo.toml"

for target in "${targets[@]}"; do
  echo "== $target"
  (cd "$crate" && RUSTC_BOOTSTRAP=1 __CARGO_TESTS_ONLY_SRC_ROOT="$src/library" RUSTFLAGS="--cfg fuzzing -D warnings" \
    cargo check --lib --tests -Zbuild-std=std,panic_abort,test --target "$target" --target-dir "$work/target")
done
