#!/usr/bin/env bash
# Regenerates the bundled spoken commands: 16 kHz mono 16-bit WAVs spoken by espeak-ng,
# resampled and normalised by sox, plus transcripts.tsv (file <TAB> transcript).
# Needs: espeak-ng sox (Debian: apt-get install espeak-ng sox).
set -euo pipefail
cd "$(dirname "$0")"
command -v espeak-ng >/dev/null || { echo "espeak-ng is missing: apt-get install espeak-ng" >&2; exit 1; }
command -v sox >/dev/null || { echo "sox is missing: apt-get install sox" >&2; exit 1; }
commands=(
  "open the front door"
  "turn off the lights"
  "call my mother"
  "what's the weather today"
  "play some music"
  "lock the back door"
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'file\ttranscript\n' > transcripts.tsv.new
for text in "${commands[@]}"; do
  name=$(echo "$text" | tr -cd 'a-z ' | tr ' ' '_')
  espeak-ng -v en-us -s 150 -w "$tmp/$name.wav" "$text"
  sox "$tmp/$name.wav" -r 16000 -c 1 -b 16 "$tmp/$name.16k.wav" norm -3 pad 0.2 0.2
  mv "$tmp/$name.16k.wav" "$name.wav"
  printf '%s.wav\t%s\n' "$name" "$text" >> transcripts.tsv.new
done
mv transcripts.tsv.new transcripts.tsv
