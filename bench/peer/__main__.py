"""`python -m bench.peer [--quick] [--json]`: the peer bench on its own, a readable summary."""

from __future__ import annotations

import argparse
import json

from bench.peer import __doc__ as DOC
from bench.peer.runner import run


def main() -> None:
    parser = argparse.ArgumentParser(description=DOC.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(quick=args.quick)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for peer, figures in result["ratios"].items():
        print(f"Arbiter vs {peer}")
        for key, value in figures.items():
            print(f"  {key:<32} {value['arbiter']:>10} {value['peer']:>10}  ratio {value['ratio']}")
    print("logging tax:", json.dumps(result["logging_tax"]))
    print("setup:", json.dumps(result["setup"]))


if __name__ == "__main__":
    main()
