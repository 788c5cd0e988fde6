"""A worker of a hand-written loop or a peer: ``python -m benchmarks.worker NAME VARIANT [N]``.

prismq-queue's workers are the real ``prismq-queue worker`` command instead.
"""

from __future__ import annotations

import sys

from benchmarks.systems import get_system


def main(argv: list[str]) -> None:
    name, variant = argv[0], argv[1]
    nproc = int(argv[2]) if len(argv) > 2 else 1
    get_system(name).run_worker(variant, nproc=nproc)


if __name__ == "__main__":
    main(sys.argv[1:])
