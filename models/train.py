"""Joint multi-exit training and the checkpoint cache.

Loss = sum over exits of weight x softmax cross-entropy (every device classifier, ``local``,
``edge``, ``cloud``), optimised with SGD + momentum and a per-step cosine-annealed learning rate,
as in the DDNN / ADA-DDNN papers (lr 0.1, momentum 0.9, batch 200; the epoch count is ours to pick).

Checkpoints live in ``cache_dir/checkpoints/`` under a SHA-256 of (arch, model options, data
config, train config, seed), so a second run with the same configuration does not retrain. They
are read with ``torch.load(weights_only=True)``; a corrupt, mismatched or unloadable checkpoint
raises a :class:`CheckpointWarning` saying why and is retrained, never used.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.nn import functional as F

from models.chain import ChainNet, create_chain_model, is_chain
from models.data import MultiViewData
from models.multiview import MultiViewNet, create_model
from models.specs import (  # noqa: F401  (re-exported: torch-free home)
    CHAIN_EXIT_GROUPS,
    CHECKPOINT_FORMAT,
    EXIT_GROUPS,
    TrainConfig,
    checkpoint_identity,
    config_hash,
    train_workers,
)


class CheckpointWarning(UserWarning):
    """A cached checkpoint could not be used and the model is being retrained."""


def _exit_weight(cfg: TrainConfig, exit_name: str) -> float:
    if exit_name in cfg.exit_weights:
        return float(cfg.exit_weights[exit_name])
    group = exit_name
    if exit_name.startswith("dev"):
        group = "dev"
    elif exit_name.startswith("exit"):
        group = "exit"
    return float(cfg.exit_weights.get(group, 1.0))


def multi_exit_loss(
    logits: Mapping[str, torch.Tensor],
    y: torch.Tensor,
    cfg: TrainConfig,
    alive: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum of per-exit cross-entropies; a dead device's own exit is not trained."""
    total = torch.zeros(())
    parts: dict[str, float] = {}
    wsum = 0.0
    for name, lg in logits.items():
        w = _exit_weight(cfg, name)
        if w == 0:
            continue
        if name.startswith("dev") and alive is not None:
            m = alive[:, int(name[3:])]
            if not m.any():
                continue
            ce = F.cross_entropy(lg[m], y[m])
        else:
            ce = F.cross_entropy(lg, y)
        parts[name] = float(ce.detach())
        total = total + w * ce
        wsum += w
    return total / max(wsum, 1e-12), parts


@torch.no_grad()
def evaluate(
    model: MultiViewNet,
    data: MultiViewData,
    split: str = "val",
    *,
    alive=None,
    mu: float = 0.0,
    batch_size: int = 500,
) -> dict[str, float]:
    """Accuracy per exit on ``split``."""
    was_training = model.training
    model.eval()
    n = data.size(split)
    labels = data.labels_of(split)
    hits = dict.fromkeys(model.exits, 0)
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size))
        out = model(data.views(split, idx), alive=alive, mu=mu)
        for e in model.exits:
            hits[e] += int((out.logits[e].argmax(1) == labels[idx]).sum())
    model.train(was_training)
    return {e: hits[e] / max(n, 1) for e in model.exits}


_PROGRESS_LOCK = threading.Lock()
_PROGRESS: list = [None, 0]  # the live display shared by concurrent trainings, its users


@contextlib.contextmanager
def _progress(enabled: bool):
    """A rich progress display; networks trained at the same time (threads) share one, since
    rich allows only one live display at a time."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if not enabled:
        with Progress(disable=True) as bar:
            yield bar
        return
    with _PROGRESS_LOCK:
        if _PROGRESS[1] == 0:
            _PROGRESS[0] = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=12),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=False,
            )
            _PROGRESS[0].start()
        _PROGRESS[1] += 1
        bar = _PROGRESS[0]
    try:
        yield bar
    finally:
        with _PROGRESS_LOCK:
            _PROGRESS[1] -= 1
            if _PROGRESS[1] == 0:
                bar.stop()
                _PROGRESS[0] = None


def _summary(acc: Mapping[str, float]) -> str:
    return " ".join(f"{k} {v:.1%}" for k, v in acc.items() if not k.startswith("dev"))


#: Intra-op threads torch uses for training and inference (environment DDNNSIM_TORCH_THREADS).
TORCH_THREADS = 1
with contextlib.suppress(ValueError):
    TORCH_THREADS = max(1, int(os.environ.get("DDNNSIM_TORCH_THREADS", "1")))


_THREADS_LOCK = threading.Lock()
_THREADS: list = [0, 0]  # users inside torch_threads (all Python threads), count before them


@contextlib.contextmanager
def torch_threads(n: int | None = None):
    """Run torch with ``n`` (default :data:`TORCH_THREADS`) threads, then restore the count.

    One thread by default: results then do not depend on the machine's core count, and the
    networks are so small that a second thread gains only about 30% on an idle 2-core machine,
    while several processes (study workers, tests) each spinning two OpenMP threads on the same
    cores slowed training down by more than 10x. Networks are rather trained side by side
    (:func:`train_workers`), each on one thread.

    Safe to use from several Python threads at once: every thread sets the count for itself,
    and the count before the first of them is restored when the last one leaves (a thread
    leaving early must not hand two threads, e.g. MKL's global count, to one still training).
    """
    with _THREADS_LOCK:
        if _THREADS[0] == 0:
            _THREADS[1] = torch.get_num_threads()
        _THREADS[0] += 1
    torch.set_num_threads(n or TORCH_THREADS)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS[0] -= 1
            if _THREADS[0] == 0:
                torch.set_num_threads(_THREADS[1])


def train_model(
    model: MultiViewNet,
    data: MultiViewData,
    cfg: TrainConfig,
    *,
    seed: int,
    progress: bool = True,
) -> dict:
    """Train ``model`` in place on ``data``'s train split; returns a history dict.

    Deterministic given ``seed``: batches, dead devices and thresholds come from a private
    generator; the global torch RNG is neither used nor changed; torch runs single-threaded
    (:func:`torch_threads`).
    """
    with torch_threads():
        return _train(model, data, cfg, seed=seed, progress=progress)


def _train(
    model: MultiViewNet, data: MultiViewData, cfg: TrainConfig, *, seed: int, progress: bool
) -> dict:
    n = data.size("train")
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total_steps = cfg.epochs * steps_per_epoch
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
    gen = torch.Generator().manual_seed(seed)
    labels = data.labels_of("train")
    history: dict = {"loss": [], "val": []}
    t0 = time.perf_counter()
    with _progress(progress) as bar:
        task = bar.add_task(model.arch, total=total_steps, info="")
        for epoch in range(cfg.epochs):
            model.train()
            perm = torch.randperm(n, generator=gen)
            run_loss = 0.0
            for k in range(steps_per_epoch):
                idx = perm[k * cfg.batch_size : (k + 1) * cfg.batch_size]
                if len(idx) < 2:  # batch norm needs two samples
                    continue
                alive = None
                if cfg.device_dropout > 0:
                    alive = (
                        torch.rand(len(idx), model.n_devices, generator=gen) >= cfg.device_dropout
                    )
                mu = 0.0
                if cfg.mu_max > 0 and model.has_attention:
                    mu = float(torch.rand((), generator=gen)) * cfg.mu_max
                out = model(data.views("train", idx), alive=alive, mu=mu)
                loss, _ = multi_exit_loss(out.logits, labels[idx], cfg, out.alive)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                run_loss += float(loss.detach())
                bar.update(
                    task,
                    advance=1,
                    info=f"ep {epoch + 1}/{cfg.epochs} loss {run_loss / (k + 1):.3f}",
                )
            history["loss"].append(run_loss / steps_per_epoch)
            if epoch + 1 < cfg.epochs:  # validation only after the last epoch (nothing
                continue  # reads the epochs between; they cost ~5% of the training time)
            acc = evaluate(model, data, "val")
            history["val"].append(acc)
            bar.update(
                task,
                info=f"ep {epoch + 1}/{cfg.epochs} "
                f"loss {history['loss'][-1]:.3f} val {_summary(acc)}",
            )
    model.eval()
    history["train_seconds"] = time.perf_counter() - t0
    return history


# --------------------------------------------------------------------------- checkpoint cache


def checkpoint_path(cache_dir: Path, arch: str, key: str) -> Path:
    return Path(cache_dir) / "checkpoints" / f"{arch}-{key[:20]}.pt"


def _try_load(path: Path, key: str, model: MultiViewNet) -> dict | None:
    """Load ``path`` into ``model``; on any problem warn and return None."""
    if not path.exists():
        return None

    from simulator.util import adopt_digest, check_digest

    def reject(why: str) -> None:
        warnings.warn(f"checkpoint {path}: {why}; retraining it", CheckpointWarning, stacklevel=3)

    wrong = check_digest(path)  # the SHA-256 stored beside it at save time
    if wrong is not None:
        reject(wrong)
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        reject(f"unreadable or corrupt ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        return None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        reject("not a ddnnsim checkpoint of this format")
        return None
    if blob.get("key") != key:
        reject(
            f"its key {str(blob.get('key'))[:12]}... does not match the configuration {key[:12]}..."
        )
        return None
    state = blob.get("state_dict")
    if not isinstance(state, dict) or not all(
        isinstance(v, torch.Tensor) and (not v.is_floating_point() or bool(torch.isfinite(v).all()))
        for v in state.values()
    ):
        reject("weights missing or not finite")
        return None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reject(f"weights do not fit the model ({str(exc).splitlines()[0][:120]})")
        return None
    adopt_digest(path)
    try:
        return json.loads(blob.get("meta", "{}"))
    except (TypeError, ValueError):
        return {}


def save_checkpoint(path: Path, key: str, model: MultiViewNet, meta: Mapping) -> None:
    from simulator.util import atomic_write_bytes, write_digest

    buf = io.BytesIO()
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "key": key,
            "arch": model.arch,
            "state_dict": model.state_dict(),
            "meta": json.dumps(meta, default=str),
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())
    write_digest(path, buf.getvalue())


_INIT_LOCK = threading.Lock()


def seeded_model(
    arch: str, options: Mapping, data: MultiViewData, seed: int, builder=None,
    encoding: str | None = None,
) -> MultiViewNet | ChainNet:
    """A freshly initialised model, the same for the same seed, leaving the global RNG as it was.

    Chain/DAG architectures (:mod:`models.chain`) take the whole image (``data.image_shape``).
    ``builder`` (a no-argument callable, e.g. a plug-in factory) replaces the registries.

    Initialisation draws from torch's global generator; the lock keeps threads that build models
    at the same time from interleaving their draws.
    """
    with _INIT_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if builder is not None:
            return builder()
        if is_chain(arch):
            return create_chain_model(
                arch,
                input_shape=data.image_shape,
                n_classes=data.n_classes,
                encoding=encoding or "float32",
                **options,
            )
        return create_model(
            arch,
            n_devices=data.n_devices,
            view_shape=data.view_shape,
            n_classes=data.n_classes,
            encoding=encoding or "float32",
            **options,
        )


def load_or_train(
    arch: str,
    options: Mapping,
    data: MultiViewData,
    data_cfg: Mapping,
    train_cfg: TrainConfig,
    *,
    seed: int,
    cache_dir: Path | None,
    progress: bool = True,
    builder=None,
) -> tuple[MultiViewNet | ChainNet, dict]:
    """The trained model for this configuration: from the cache, or trained and cached.

    ``builder`` builds the model instead of the registries (plug-ins, :mod:`models.plugins`);
    ``options`` then only enter the key.

    Returns:
        (model in eval mode, meta) where meta holds the key, the training history and whether the
        checkpoint came from the cache (``meta["cached"]``).
    """
    ident = checkpoint_identity(arch, options, data_cfg, train_cfg, seed)
    key = config_hash(ident)
    path = checkpoint_path(cache_dir, arch, key) if cache_dir is not None else None
    if path is not None:
        model = seeded_model(arch, options, data, seed, builder, train_cfg.encoding)
        meta = _try_load(path, key, model)
        if meta is not None:
            model.eval()
            return model, {**meta, "key": key, "cached": True, "path": str(path)}
    # fresh: a rejected load may have touched it
    model = seeded_model(arch, options, data, seed, builder, train_cfg.encoding)
    history = train_model(model, data, train_cfg, seed=seed, progress=progress)
    meta = {"identity": ident, "history": history}
    if path is not None:
        save_checkpoint(path, key, model, meta)
    return model, {**meta, "key": key, "cached": False, "path": str(path) if path else None}
