#!/usr/bin/env bash
# bash scripts/offline_bundle/check_bundle.sh BUNDLE: install from the bundle as an offline GPU
# node would, and train from its data. The node is simulated by a fresh venv that sees this
# machine's .venv packages except the bundle's (what node.txt assumes the node has), through a
# .pth file; pip gets --no-index, so anything missing from the bundle fails the install.
set -euo pipefail
bundle=$(cd "${1:?usage: check_bundle.sh BUNDLE}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

site=$("$root/.venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# the bundle's distributions, this project and what builds on Hydra are left out of the node image
left_out='^(hydra|hydra_core|hydra_plugins|hydra_submitit_launcher|omegaconf|antlr4|optuna|optuna_dashboard|alembic|sqlalchemy|mako|colorlog|greenlet|tomli|sgmod|__editable__)'
mkdir -p "$work/node-image"
for entry in "$site"/*; do
  name=$(basename "$entry")
  if ! echo "$name" | tr 'A-Z-' 'a-z_' | grep -Eq "$left_out"; then
    ln -s "$entry" "$work/node-image/$name"
  fi
done
python3 -m venv --without-pip "$work/venv"  # pip and setuptools come with the node image
node_python="$work/venv/bin/python"
echo "$work/node-image" > "$("$node_python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/node-image.pth"
if "$node_python" -c "import hydra" 2>/dev/null || ! "$node_python" -c "import torch, lightning" 2>/dev/null; then
  echo "error: the simulated node should have torch and lightning but not hydra" >&2
  exit 1
fi

"$node_python" -m pip install --no-index --find-links "$bundle/wheels" sgmod-study
"$node_python" -c "import hydra, optuna, sgmod_study; print('installed from the bundle:', sgmod_study.__file__)"
cd "$root"
"$node_python" src/train.py data.data_dir="$bundle/data" data.system_dir="$work/no-system-copy" data.download=false \
  trainer.max_epochs=1 trainer.limit_train_batches=5 +trainer.limit_val_batches=5 +trainer.limit_test_batches=5 \
  trainer.enable_progress_bar=false hydra.run.dir="$work/run" | tail -3
grep -q "data_dir=$bundle/data" "$work/run/.hydra/overrides.yaml"
echo "ok: installed with --no-index from $bundle and trained on its Fashion-MNIST"
