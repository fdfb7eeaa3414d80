"""robotempo's side of a measurement: one fresh process, robotempo's venv. See tasks.py for the protocol."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tasks import Library, main  # noqa: E402


class Robotempo(Library):
    name = "robotempo"

    def load(self) -> None:
        import torch  # noqa: F401

        from robotempo.dataset import LeRobotDataset, collate

        self._cls, self.collate = LeRobotDataset, collate

    def open(self, root, episodes, delta_timestamps, **kw):
        return self._cls(
            f"bench/{Path(root).name}", root=root, episodes=episodes, delta_timestamps=delta_timestamps, **kw
        )

    def full_pass(self, ds) -> int:
        """Every row once, in order, through the batched path (256 rows a call)."""
        n = len(ds)
        for start in range(0, n, 256):
            self.collate(ds.__getitems__(range(start, min(n, start + 256))))
        return n

    def batch(self, ds, indices, mode: str):
        import torch

        items = ds.__getitems__(indices)
        if mode == "stacked":
            return self.collate(items)
        if mode == "default":
            return torch.utils.data.default_collate(list(items))
        raise ValueError(mode)

    def version(self) -> str:
        """robotempo's version and a hash of its source files: the tree changes while people work."""
        import hashlib

        import robotempo

        h = hashlib.sha256()
        for p in sorted(Path(robotempo.__file__).parent.rglob("*.py")):
            h.update(p.read_bytes())
        return f"robotempo {robotempo.__version__} src {h.hexdigest()[:10]}"

    def extras(self, ds) -> dict:
        return {"numeric_nbytes": int(ds.frames.numeric_nbytes), "episodes": len(ds.episodes)}


if __name__ == "__main__":
    sys.exit(main({"robotempo": Robotempo}))
