"""The order in which a training run sees its clips, and the batches made from it.

Data order is a pure function of (seed, position in the stream): position p always maps to the
same item, so a resumed run starts at its step's position without replaying the data, and a
run with DataLoader workers sees exactly the batches of a run without.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


def _indices(length: int, seed: int, start: int, paired: bool = False):
    """Dataset indices for stream positions ``start, start+1, ...``: a fresh seeded
    permutation per epoch, so position p always maps to the same item. ``paired`` permutes
    pairs (2k, 2k+1) and keeps each pair's two items next to each other."""
    group = 2 if paired else 1
    length -= length % group
    epoch, offset = divmod(start, length)
    while True:
        order = torch.randperm(length // group,
                               generator=torch.Generator().manual_seed(seed + epoch))
        items = (order[:, None] * group + torch.arange(group)).flatten()  # pairs stay adjacent
        yield from items[offset:].tolist()
        epoch, offset = epoch + 1, 0


def _index_batches(length: int, batch_size: int, seed: int, rank: int, world: int,
                   start_batch: int, paired: bool = False) -> Iterator[list[int]]:
    """This process's dataset indices of each batch, from global batch ``start_batch``.

    Global batch g covers stream positions [g*world*B, (g+1)*world*B); process r takes its
    r-th slice, so any number of processes sees the same data as one process would (an even
    B keeps pairs within one process's slice).
    """
    stream = _indices(length, seed, start_batch * world * batch_size, paired)
    while True:
        chunk = [next(stream) for _ in range(world * batch_size)]
        yield chunk[rank * batch_size:(rank + 1) * batch_size]


class _Indexed(torch.utils.data.Dataset):
    """Items paired with their index, so batches made by DataLoader workers say which they are
    (the latent cache is keyed by index)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, dict]:
        return index, self.dataset[index]


def _collate(items: list[tuple[int, dict]]) -> tuple[list[int], dict]:
    return [i for i, _ in items], {"frames": torch.stack([it["frames"] for _, it in items]),
                                   "caption": [it["caption"] for _, it in items]}


def batches(dataset, batch_size: int, seed: int, rank: int, world: int, start_batch: int,
             num_workers: int = 0, paired: bool = False) -> Iterator[tuple[list[int], dict]]:
    """(indices, batch) pairs for this process from global batch ``start_batch``; with
    ``num_workers`` the items are made in that many worker processes, in the same order."""
    index_batches = _index_batches(len(dataset), batch_size, seed, rank, world, start_batch,
                                   paired)
    if num_workers == 0:
        for mine in index_batches:
            yield _collate([(i, dataset[i]) for i in mine])
        return
    yield from torch.utils.data.DataLoader(
        _Indexed(dataset), batch_sampler=index_batches, num_workers=num_workers,
        collate_fn=_collate, pin_memory=torch.cuda.is_available(), prefetch_factor=4,
        worker_init_fn=_one_thread,
        # Its own generator for the workers' base seed: drawn from the global one, it would
        # shift every later noise draw and make a run with workers differ from one without.
        generator=torch.Generator())


def _one_thread(worker: int) -> None:
    """A worker draws clips on its own core; torch's default of one thread per core in every
    worker would oversubscribe the machine many times over."""
    torch.set_num_threads(1)
