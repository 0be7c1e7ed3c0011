#!/usr/bin/env bash
# Build the plugins (release) and bundle them: target/bundled/advox.clap (CLAP: the shared
# library renamed) and target/bundled/advox.vst3 (the VST3 bundle layout). Both files hold
# Cloak and Sentinel. Install by copying them to ~/.clap and ~/.vst3.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p advox-plugin --lib
target_dir="${CARGO_TARGET_DIR:-target}"
case "$(uname -s)" in
  Linux) lib="$target_dir/release/libadvox_plugin.so"; arch="$(uname -m)-linux"; ext=so ;;
  Darwin) lib="$target_dir/release/libadvox_plugin.dylib"; arch="MacOS"; ext=dylib ;;
  *) lib="$target_dir/release/advox_plugin.dll"; arch="x86_64-win"; ext=vst3 ;;
esac
out="$target_dir/bundled"
rm -rf "$out/advox.clap" "$out/advox.vst3"
mkdir -p "$out/advox.vst3/Contents/$arch"
cp "$lib" "$out/advox.clap"
if [ "$ext" = "vst3" ]; then
  cp "$lib" "$out/advox.vst3/Contents/$arch/advox.vst3"
else
  cp "$lib" "$out/advox.vst3/Contents/$arch/advox.$ext"
fi
# Debug info (kept in release builds for profiling) is not shipped.
if command -v strip >/dev/null; then
  strip --strip-debug "$out/advox.clap" "$out/advox.vst3/Contents/$arch/"* 2>/dev/null || true
fi
echo "bundled: $out/advox.clap $out/advox.vst3"
