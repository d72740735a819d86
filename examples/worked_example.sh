#!/usr/bin/env bash
# The README's worked example, end to end, offline, in a few minutes on 2 CPU cores.
#   bash examples/worked_example.sh [WORKDIR]      (default: ./work/example)
# tests/test_worked_example.py runs this very script, so the README cannot drift from what works.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
W=${1:-work/example}
mkdir -p "$W"
PORT=${VMETA_EXAMPLE_PORT:-8765}

# 1. Sheets + videos -> records.jsonl (3 bad rows in the sample go to rejects.jsonl, with sheet:row and what to do)
vmeta data build "$here/sample/sheet.xlsx" --videos "$here/sample/videos" --out "$W/ds"

# 2. Stage 2: rewrite labels into the five-slot template. The stand-in LLM below runs offline;
#    with a real endpoint, set VMETA_LLM_API_KEY (DeepSeek by default) and drop --base-url/--api-key.
vmeta data mock-llm --port "$PORT" >"$W/mock-llm.log" 2>&1 &
mock=$!
trap 'kill $mock 2>/dev/null || true' EXIT
python - "$PORT" <<'PY'  # wait until the stand-in answers
import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v1/models", timeout=1); break
    except OSError:
        time.sleep(0.1)
PY
vmeta data rewrite "$W/ds" --dry-run --base-url "http://127.0.0.1:$PORT/v1" --api-key none
vmeta data rewrite "$W/ds" --base-url "http://127.0.0.1:$PORT/v1" --api-key none --model mock

# 3. Stage 3: a person reviews. `vmeta data review DS` opens the page; here one scripted decision.
vmeta data review "$W/ds" --id 诙谐类_47 --accept --note "checked against the video"

# 4. Split (the sample has 2 videos per category, so 1 test item each), export for LLaMA-Factory/ms-swift, stats.
vmeta data split "$W/ds" --test-per-category 1
vmeta data export "$W/ds"
vmeta data stats "$W/ds"

# 5. Models, offline: a demo model, the tiny Qwen2-VL trained for half a minute on the train split's labels, so it
#    answers in the template's words (every stage is real). It recites what it learnt: on the unseen test clips its
#    answers are other clips' labels or blends of them, scored as such. `vmeta models build-tiny` is the same
#    architecture with random weights (blank answers). With real weights use --model qwen2-vl-2b-instruct (or a
#    local folder) and drop --max-steps.
vmeta models build-demo "$W/demo" --data "$W/ds" --split train --force
vmeta predict --model "$W/demo" --data "$W/ds" --split test --out "$W/pred/zero-shot.jsonl" --max-new-tokens 256

# 6. Fine-tune with LoRA (a few steps here; configs/qwen2-vl-2b/*.yaml hold the thesis settings), predict with the run.
vmeta train --method lora --model "$W/demo" --data "$W/ds" --out "$W/runs/lora" --max-steps 4 --overwrite
vmeta predict --run "$W/runs/lora" --data "$W/ds" --split test --out "$W/pred/lora.jsonl" --max-new-tokens 256

# 7. Evaluate (BERTScore needs bert-base-chinese on disk; drop --no-bertscore when you have it) and compare.
vmeta eval "$W/pred/zero-shot.jsonl" --out "$W/eval/zero-shot" --no-bertscore
vmeta eval "$W/pred/lora.jsonl" --out "$W/eval/lora" --no-bertscore
vmeta compare "$W/eval/zero-shot" "$W/eval/lora" --names zero-shot,lora --out "$W/compare" --gallery 1 --data "$W/ds"

# 7b. Human evaluation: a blind side-by-side study of the two prediction files. Raters use the page
#     (`vmeta rate serve DIR`); here two raters' ratings made in a spreadsheet are imported, then the report.
vmeta rate new "$W/pred/zero-shot.jsonl" "$W/pred/lora.jsonl" --data "$W/ds" --out "$W/study"
vmeta rate import "$W/study" "$here/sample/ratings.csv"
vmeta rate report "$W/study"

# 8. Merge the adapter into a standalone model folder (safetensors shards, processor, model card).
vmeta export "$W/runs/lora" --out "$W/exports/lora" --overwrite
# Then chat with it in the browser:  vmeta serve --model "$W/demo" --adapter lora="$W/runs/lora/adapter"
# (`vmeta models build-demo DIR` alone learns all ten sample clips: send one and it answers with its label.)
