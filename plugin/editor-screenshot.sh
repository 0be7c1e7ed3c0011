#!/usr/bin/env bash
# Screenshots of the Cloak and Sentinel editors with real audio flowing, on a virtual display.
#
#   plugin/editor-screenshot.sh [OUT_DIR]      (default: target/screenshots)
#
# Starts Xvfb and a JACK server with the dummy driver, runs the standalone apps (advox-cloak,
# advox-sentinel) on JACK, plays speech into them with jack-play, and grabs the screen with xwd:
#   cloak.png     Cloak (masked noise, chosen by ADVOX_CLOAK_MODE) on six spoken commands:
#                 input spectrum, masking threshold, perturbation per band.
#   sentinel.png  Sentinel on the commands clean, then the same commands through a headless
#                 Cloak in masked noise (JACK: jack-play → advox-cloak → advox-sentinel): the
#                 score history, threshold line, model-check score and detected indicator.
# Needs Debian's xvfb, jackd2, jack-tools, x11-apps, netpbm and Mesa (installed when missing,
# as root) and tiny.en for Sentinel's model check (`advox model fetch`). Not part of `cargo test`;
# .ci/run runs it when ADVOX_CI_SCREENSHOTS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/screenshots}
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    sleep 1
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

need=()
for tool in Xvfb:xvfb jackd:jackd2 jack-play:jack-tools xwd:x11-apps pnmtopng:netpbm; do
    command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ! -e /usr/lib/x86_64-linux-gnu/dri/swrast_dri.so ] && [ ! -e /usr/lib/x86_64-linux-gnu/libGLX_mesa.so.0 ]; then
    need+=(libgl1-mesa-dri libglx-mesa0)
fi
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo build --quiet -p advox-plugin --bins
bin=target/debug

# Speech: the six bundled commands.
python3 - "$work" <<'EOF'
import sys, wave
work = sys.argv[1]
names = ["play_some_music", "open_the_front_door", "call_my_mother",
         "turn_off_the_lights", "lock_the_back_door", "whats_the_weather_today"]
out = wave.open(f"{work}/clean.wav", "wb")
out.setnchannels(1); out.setsampwidth(2); out.setframerate(16000)
for n in names:
    w = wave.open(f"samples/{n}.wav")
    out.writeframes(w.readframes(w.getnframes()))
out.close()
EOF

# A virtual display on a free number (Xvfb picks it and writes it to fd 3).
Xvfb -displayfd 3 -screen 0 1024x768x24 -nolisten tcp 3>"$work/display" >"$work/xvfb.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/display" ] && break; sleep 0.1; done
display=:$(cat "$work/display")
export DISPLAY=$display
server="advox-shot-$$"
export JACK_DEFAULT_SERVER=$server
jackd --no-realtime -n "$server" -d dummy -r 48000 -p 512 >"$work/jackd.log" 2>&1 &
pids+=($!)
sleep 2

# start APP: run the standalone APP on JACK and wait for its ports; prints its JACK client name.
start() {
    local app=$1
    "$bin/$app" --backend jack >>"$work/$app.log" 2>&1 &
    pids+=($!)
    local client=${app//-/_}
    for _ in $(seq 50); do
        jack_lsp 2>/dev/null | grep -q "^$client:input_1" && break
        sleep 0.2
    done
}

# grab NAME WIDTH HEIGHT: the top-left WIDTH × HEIGHT of the screen (where the window opens).
grab() {
    xwd -root -silent -display "$display" | xwdtopnm 2>/dev/null |
        pnmcut -left 0 -top 0 -width "$2" -height "$3" | pnmtopng >"$out/$1.png"
    echo "wrote $out/$1.png"
}

# Cloak (masked noise: the mute segment, the default, fills no band meter) on the six commands.
ADVOX_CLOAK_MODE=masked-noise start advox-cloak
JACK_PLAY_CONNECT_TO="advox_cloak:input_%d" jack-play "$work/clean.wav" >>"$work/play.log" 2>&1 &
pids+=($!)
sleep 5
grab cloak 760 480
kill -INT "${pids[@]:2}" 2>/dev/null || true
sleep 2

# Sentinel on the six commands clean, then through a headless Cloak (the real-time chain).
ADVOX_NO_GUI=1 ADVOX_CLOAK_MODE=masked-noise start advox-cloak
start advox-sentinel
jack_connect advox_cloak:output_1 advox_sentinel:input_1
jack_connect advox_cloak:output_2 advox_sentinel:input_2
{
    JACK_PLAY_CONNECT_TO="advox_sentinel:input_%d" jack-play "$work/clean.wav"
    JACK_PLAY_CONNECT_TO="advox_cloak:input_%d" jack-play "$work/clean.wav"
} >>"$work/play.log" 2>&1 &
pids+=($!)
sleep 19
grab sentinel 760 440
