"""The GAN's collapse flag: when a generator's samples count as collapsed, and by which criterion.
Plain Python, no torch: a run sets the flag from it (``gan_quality.quality``), and the study's
report reads from it which criterion marked each flagged run.

The flag marks a generator whose samples cover at most half of the classes, or almost none of the
real distribution. Its thresholds come from two sources. docs/gan_metric_sanity.md (real images
degraded on purpose, ``python scripts/fid_sanity.py``): real images with 5 of the 10 classes
dropped cover 5 classes at COVERED_SHARE and are flagged; 1 or 3 dropped classes are not. And real
DCGAN runs: on this feature net recall is small even for a working generator (a width-32 DCGAN
reaches about 0.15 after 15 epochs and 0.28 after 30 at batch 256, with all 10 classes covered),
because recall here falls as fast with image quality as with diversity (blur of half a pixel alone
takes real images from 0.86 to 0.15). So recall only flags where it is practically zero, below
COLLAPSE_MIN_RECALL = 0.01 (fewer than 1 in 100 real images has a generated image nearby): the same
10 images repeated (a collapse within the classes) score 0.000, heavy blur or noise and an
untrained generator too. Hence: collapsed when at most COLLAPSE_MAX_CLASSES = 5 classes are
covered, or recall is below COLLAPSE_MIN_RECALL."""

from __future__ import annotations

# A class counts as covered when it holds at least this share of the generated images: half its
# fair share (0.1 of 10 classes). Lower, and the feature net's confusions would cover missing
# classes: it files a few per cent of a present class's images under a missing look-alike (shirt,
# T-shirt/top, pullover, coat), up to 3.6% of the set over all 252 ways of dropping 5 classes.
COVERED_SHARE = 0.05
COLLAPSE_MAX_CLASSES = 5  # at most half of the 10 classes covered: collapsed
COLLAPSE_MIN_RECALL = 0.01  # recall below this: collapsed
FEW_CLASSES, NO_RECALL = "few classes", "no recall"  # the two criteria, as collapse_reasons names them


def collapse_reasons(classes: float, recall: float) -> tuple[str, ...]:
    """The criteria that flag these samples: FEW_CLASSES (at most COLLAPSE_MAX_CLASSES classes
    covered), NO_RECALL (recall below COLLAPSE_MIN_RECALL); empty where none does."""
    hits = ((FEW_CLASSES, classes <= COLLAPSE_MAX_CLASSES), (NO_RECALL, recall < COLLAPSE_MIN_RECALL))
    return tuple(name for name, hit in hits if hit)


def is_collapsed(classes: float, recall: float) -> bool:
    """Mode collapse: at most COLLAPSE_MAX_CLASSES classes covered, or recall below COLLAPSE_MIN_RECALL."""
    return bool(collapse_reasons(classes, recall))
