"""Train a tiny speed-conditioned action-chunk policy on a mixture of three robots (torchrun, CPU, gloo).

    torchrun --nproc_per_node 2 examples/train_tiny_policy.py --data /tmp/tiny-data --out /tmp/tiny-run

The three synthetic datasets differ in fps (10, 20, 30), state/action dims and cameras (a PNG camera, a video
camera under another key, none); they are written into `--data` on the first run. Each dataset's episodes are
split into train and validation with `split_episodes` (by episode, per task, from the seed only). The train
mixture is sampled 0.5 / 0.3 / 0.2 by `robotempo.Sampler` across the ranks; the policy predicts a 0.3 s
action chunk from the state, the camera colours, the speed label and the robot.

Rank 0 logs every step to `<out>/log.jsonl` (train loss averaged over ranks; validation loss every
`--val-every` steps), saves `<out>/checkpoint.pt` every `--save-every` steps (model, optimiser, sampler
state at the position the loop consumed, history), and writes `<out>/loss_curve.png` at the end. Run the same
command again after an interruption (Ctrl-C, SIGKILL, a lost node) and it resumes from the checkpoint:
the remaining steps see exactly the batches, and give exactly the losses, of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from robotempo import Mixture, Sampler, collate, open_once, split_episodes
from robotempo.synth import write_synthetic

CHUNK_S = [0.0, 0.1, 0.2, 0.3]  # the action chunk, in seconds: on the frame grid of every dataset
ROBOTS = {  # name: (write_synthetic arguments, key map onto the mixture's keys)
    "arm_a": ({"version": "v3.0", "fps": 10, "state_dim": 6, "action_dim": 5, "camera": "image"}, None),
    "arm_b": (
        {"version": "v2.1", "fps": 20, "state_dim": 8, "action_dim": 7, "camera": "video"},
        {"observation.images.top": "observation.images.wrist"},
    ),
    "arm_c": ({"version": "v3.0", "fps": 30, "state_dim": 4, "action_dim": 4, "camera": None}, None),
}
WEIGHTS = [0.5, 0.3, 0.2]
CAMERAS = ["observation.images.top", "observation.images.wrist"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the three datasets (written if absent)")
    p.add_argument("--out", type=Path, required=True, help="log, checkpoint, loss curve; resumed")
    p.add_argument("--episodes", type=int, default=12, help="episodes per dataset when writing them")
    p.add_argument("--steps", type=int, default=200, help="optimiser steps in total")
    p.add_argument("--batch-size", type=int, default=16, help="samples per rank per step")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers per rank")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--val-every", type=int, default=20)
    p.add_argument("--save-every", type=int, default=10)
    p.add_argument("--log-indices", action="store_true", help="log each rank's indices per step")
    p.add_argument("--kill-at-step", type=int, default=None, help="SIGKILL rank 0 after this step")
    return p.parse_args()


# -- data ----------------------------------------------------------------------------------------------------
def write_datasets(data: Path, episodes: int, seed: int) -> None:
    """The datasets absent from `data`, each written under a temporary name and renamed when complete."""
    for name, (kwargs, _) in ROBOTS.items():
        root = data / name
        if not (root / "meta" / "info.json").is_file():
            tmp = data / f".{name}.partial"
            if tmp.exists():
                shutil.rmtree(tmp)
            length = 2.0 * kwargs["fps"]  # two seconds per episode on average
            write_synthetic(tmp, n_episodes=episodes, n_tasks=3, image_size=(32, 32), seed=seed,
                            mean_length=length, **kwargs)  # fmt: skip
            tmp.rename(root)


def spec(data: Path, name: str, **kwargs) -> dict:
    return {"repo_id": f"tiny/{name}", "root": str(data / name), **kwargs}


def make_mixtures(args) -> tuple[Mixture, Mixture]:
    key_maps = [m for _, m in ROBOTS.values()]
    whole = Mixture([spec(args.data, n) for n in ROBOTS], key_maps=key_maps)
    train_eps, val_eps = split_episodes(whole, val_fraction=args.val_fraction, seed=args.seed)

    def mixture(episodes: list[list[int]], weights, **kw) -> Mixture:
        specs = [spec(args.data, n, episodes=e, **kw) for n, e in zip(ROBOTS, episodes)]
        return Mixture(specs, weights=weights, key_maps=key_maps, delta_timestamps={"action": CHUNK_S})

    # Validation weighs every frame alike (weights=None): each validation frame is scored once.
    return mixture(train_eps, WEIGHTS, speed_dropout=0.2, seed=args.seed), mixture(val_eps, None)


# -- model ---------------------------------------------------------------------------------------------------
def features(batch: dict) -> torch.Tensor:
    """State (zero-padded, with its dim mask), mean colour per camera (with its pad flag), speed, robot."""
    state = batch["observation.state"]
    parts = [state, batch["observation.state_dim_is_pad"].float()]
    for key in CAMERAS:
        pad = batch[f"{key}_is_pad"].float()
        parts += [batch[key].mean(dim=(2, 3)) * (1 - pad)[:, None], pad[:, None]]
    speed = F.one_hot(torch.div(batch["speed"], 10, rounding_mode="floor"), 11).float()
    speed_pad = batch["speed_is_pad"].float()[:, None]
    parts += [speed * (1 - speed_pad), speed_pad, F.one_hot(batch["dataset_index"], len(ROBOTS)).float()]
    return torch.cat(parts, dim=1)


class TinyPolicy(torch.nn.Module):
    def __init__(self, n_in: int, chunk: int, action_dim: int, hidden: int = 128):
        super().__init__()
        self.chunk, self.action_dim = chunk, action_dim
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden),
            torch.nn.GELU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.GELU(),
            torch.nn.Linear(hidden, chunk * action_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1, self.chunk, self.action_dim)


def masked_error(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of squared errors over real chunk frames and real action dims, and how many values that is."""
    target = batch["action"]
    real = ~batch["action_is_pad"][:, :, None] & ~batch["action_dim_is_pad"][:, None, :]
    err = (model(features(batch)) - target) ** 2 * real
    return err.sum(), real.sum()


# -- loop ----------------------------------------------------------------------------------------------------
def all_mean(value: torch.Tensor) -> float:
    value = value.detach().clone()
    dist.all_reduce(value)
    return float(value) / dist.get_world_size()


def validate(model, val: Mixture, batch_size: int) -> float:
    sampler = Sampler(val, seed=0, shuffle=False)  # each rank a disjoint shard (its last round padded)
    loader = torch.utils.data.DataLoader(val, batch_size=batch_size, sampler=sampler, collate_fn=collate)
    total = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for batch in loader:
            err, count = masked_error(model, batch)
            total += torch.stack([err.double(), count.double()])
    dist.all_reduce(total)
    return float(total[0] / total[1])


def save(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # a kill during the save leaves the previous checkpoint intact


def write_log(out: Path, history: list[dict]) -> None:
    tmp = out / "log.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
    os.replace(tmp, out / "log.jsonl")


def plot(out: Path, history: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in history], [r["train_loss"] for r in history], label="train", lw=1)
    val = [r for r in history if "val_loss" in r]
    ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
    ax.set(xlabel="step", ylabel="masked MSE", yscale="log", title="tiny policy on a 3-robot mixture")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_curve.png", dpi=110)


def main() -> None:
    args = parse_args()
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    torch.set_num_threads(1)
    rank = dist.get_rank()
    args.out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        write_datasets(args.data, args.episodes, args.seed)
    dist.barrier()  # the other ranks open the datasets once rank 0 has written them
    train, val = open_once(lambda: make_mixtures(args))  # rank 0 opens, every rank gets the same mixtures
    n_in = features(train.__getitems__([0]).stacked).shape[1]
    action_dim = train.schema["action"].shape[0]
    torch.manual_seed(args.seed)
    model = torch.nn.parallel.DistributedDataParallel(TinyPolicy(n_in, len(CHUNK_S), action_dim))
    optimiser = torch.optim.Adam(model.parameters(), lr=args.lr)
    sampler = Sampler(train, seed=args.seed)  # rank and world size from the process group
    step, history = 0, []
    checkpoint = args.out / "checkpoint.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        model.module.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        sampler.load_state_dict(state["sampler"])  # may come from another world size: it resumes exactly
        step, history = state["step"], state["history"]
        if rank == 0:
            print(f"resumed at step {step} (epoch {sampler.epoch}, position {state['sampler']['position']})")
    if rank == 0:
        write_log(args.out, history)  # steps done after the checkpoint are redone, so their lines go
    epoch = sampler.epoch
    while step < args.steps:
        sampler.set_epoch(epoch)  # keeps a resumed position within its own epoch
        loader = torch.utils.data.DataLoader(
            train, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers, collate_fn=collate
        )
        consumed = 0  # samples this rank's loop has used since iter(loader): the loader prefetches ahead
        for batch in loader:
            err, count = masked_error(model, batch)
            optimiser.zero_grad()
            (err / count).backward()
            optimiser.step()
            step += 1
            consumed += len(batch["index"])
            record = {"step": step, "epoch": epoch, "train_loss": all_mean(err / count)}
            if args.log_indices:
                gathered = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, batch["index"].tolist())
                record["indices"] = gathered
            if step % args.val_every == 0 or step == args.steps:
                record["val_loss"] = validate(model.module, val, args.batch_size)
            history.append(record)
            if rank == 0:
                with open(args.out / "log.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
            if step % args.save_every == 0 and rank == 0:
                save(checkpoint, {
                    "model": model.module.state_dict(), "optimiser": optimiser.state_dict(),
                    "sampler": sampler.state_dict(consumed=consumed), "step": step, "history": history,
                })  # fmt: skip
            if step == args.kill_at_step and rank == 0:
                os.kill(os.getpid(), signal.SIGKILL)
            if step >= args.steps:
                break
        else:
            epoch += 1
    if rank == 0 and history:
        plot(args.out, history)
        last = history[-1]
        print(f"done: {step} steps, epoch {epoch}, train loss {last['train_loss']:.4g}, "
              f"validation loss {last.get('val_loss', float('nan')):.4g}")  # fmt: skip
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
