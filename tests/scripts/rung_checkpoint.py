"""A training program that only writes its rung-end checkpoint (rank 0), as a plain file in
``SEER_CHECKPOINT_URI``, the node's local directory the node entry point uploads from."""

from __future__ import annotations

import os
from pathlib import Path


def main() -> None:
    if os.environ.get("RANK", "0") == "0":
        out = Path(os.environ["SEER_CHECKPOINT_URI"])
        (out / f"rung-{os.environ['SEER_RUNG']}.ckpt").write_bytes(b"weights")


if __name__ == "__main__":
    main()
