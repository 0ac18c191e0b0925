#!/usr/bin/env bash
# Fashion-MNIST "where it can be had": Debian's dataset-fashion-mnist package when apt is
# usable (it needs no internet beyond the package mirror), otherwise nothing here and the
# first training run falls back to a torchvision download into data.data_dir.
set -u
system_dir=/usr/share/datasets/fashion-mnist
if [ -f "$system_dir/train-images-idx3-ubyte.gz" ]; then
  echo "Fashion-MNIST: found the system copy in $system_dir"
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "Fashion-MNIST: installing Debian's dataset-fashion-mnist"
  if apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
     || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }; then
    echo "Fashion-MNIST: installed in $system_dir"
    exit 0
  fi
fi
echo "Fashion-MNIST: no system copy (needs root and apt); the first run will download it with torchvision into data/"
