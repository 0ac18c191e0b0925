#!/usr/bin/env bash
# make offline-bundle [BUNDLE=offline-bundle]: on a machine with package access, collect what an
# offline GPU node needs besides its CUDA PyTorch stack (node.txt) into one folder:
#   wheels/  this project's wheel, and the wheels of wheels.txt for CPython 3.10-3.12, manylinux x86-64
#   data/    Fashion-MNIST's four files, in the layout data.data_dir takes (FashionMNIST/raw/)
# and refuse a folder over 60 MB. On the node: README, "Offline GPU node".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest=${1:-offline-bundle}
python=${PYTHON:-$root/.venv/bin/python}
pythons=${OFFLINE_BUNDLE_PYTHONS:-"3.10 3.11 3.12"}
limit_mb=60

# the requirements of wheels.txt whose marker holds for Python $1 (pip download evaluates
# markers for the Python running it, not for --python-version)
requirements_for() {
  "$python" - "$1" "$here/wheels.txt" <<'PY'
import sys
from packaging.requirements import Requirement
version, path = sys.argv[1], sys.argv[2]
for line in open(path):
    line = line.split("#")[0].strip()
    if line:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"python_version": version}):
            print(f"{requirement.name}{requirement.specifier}")
PY
}
built=antlr4-python3-runtime  # source only on PyPI: its wheel is built here (pure Python)

rm -rf "$dest"
mkdir -p "$dest/wheels" "$dest/data/FashionMNIST/raw"
"$python" -m pip wheel --quiet --no-deps -w "$dest/wheels" "$root" "$(requirements_for 3.12 | grep "^$built==")"
rm -rf "$root/build"  # setuptools' scratch folder for the project's wheel
for version in $pythons; do
  # shellcheck disable=SC2046  # one argument per requirement line
  "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$dest/wheels" \
    --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    $(requirements_for "$version" | grep -v "^$built==") ${OFFLINE_BUNDLE_EXTRA:-}
done

# the dataset where training finds it (data.data_dir, the system copy, or a download into data/)
source_dir=$(cd "$root" && "$python" -c "
from sgmod_study.data import SYSTEM_FASHION_MNIST, locate_fashion_mnist
print(locate_fashion_mnist('data', SYSTEM_FASHION_MNIST, download=True))")
cp "$source_dir"/*-ubyte* "$dest/data/FashionMNIST/raw/"

(cd "$dest" && find wheels data -type f -print0 | sort -z | xargs -0 sha256sum > SHA256SUMS)
size_mb=$(du -sm "$dest" | cut -f1)
echo "$dest: $(ls "$dest/wheels" | wc -l) wheels, Fashion-MNIST from $source_dir, ${size_mb} MB"
if [ "$size_mb" -gt "$limit_mb" ]; then
  echo "error: $dest is ${size_mb} MB, over the ${limit_mb} MB a bundle may take; drop OFFLINE_BUNDLE_EXTRA packages" >&2
  exit 1
fi
