#!/usr/bin/env bash
# Runs the four ablation recipes one after another (1 thread each) and collects their
# validation NoC@85 (held-out part of the training folders) into ablation_results.json.
set -euo pipefail
cd "$(dirname "$0")"
for v in global local context discount; do
    napari-risnet train --config "$v.toml"
done
python - <<'PY'
import json, pathlib
rows = {}
for v in ("global", "local", "context", "discount"):
    h = json.loads(pathlib.Path(f"../../../runs/ablation_{v}/history.json").read_text())
    rows[v] = h[-1]
pathlib.Path("ablation_results.json").write_text(json.dumps(rows, indent=1))
print(json.dumps(rows, indent=1))
PY
