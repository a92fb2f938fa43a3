"""Threshold certificates: validity and tightness over random splits of item sets whose truth is known
(evaluation.calibration.study; the same as `manage.py calibration_study --per-rule --from-history`).

    python bench/calibration_bench.py [--quick]

Per item set and target: the miss rate (certified thresholds below target on the fresh items, on the whole
set, and on an independent sample for drawn sets; the promise is at most delta, and the fresh half of one
finite set over-counts — evaluation.calibration.study says why) and the tightness (certified cost over
the cheapest setting that met the target on the same fresh items in hindsight; goals: median <= 1.2,
p90 <= 1.4). 200 splits each; --quick: one target.
No database: the items are routed and answered in memory.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGETS, QUICK_TARGETS, DELTA, SPLITS = (0.9, 0.95, 0.97), (0.95,), 0.05, 200


def run(quick: bool = False) -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from evaluation.calibration.study import POPULATIONS, live_study, run_per_rule_study, run_study

    started = time.monotonic()
    targets = QUICK_TARGETS if quick else TARGETS
    rows = run_study(list(POPULATIONS), targets=targets, delta=DELTA, splits=SPLITS)
    rows += run_per_rule_study(targets=targets, delta=DELTA, splits=SPLITS)
    rows += [live_study(target=target, delta=DELTA, splits=SPLITS) for target in targets]
    return {
        "rows": rows,
        "seconds": round(time.monotonic() - started, 1),
        "loadavg": [round(value, 2) for value in os.getloadavg()],
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
