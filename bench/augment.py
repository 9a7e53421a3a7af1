"""Augmentation overhead: time per op on 32x32 batches, and `hflip,crop=4` as a share of a step.

    python bench/augment.py [--batch 128] [--threads 2] [--model cnn] [--repeats 30]

A training step (forward, backward, AdamW update of the model on a [B,3,32,32] batch) is timed
with and without the augmentation; the overhead is (augmented - plain) / plain. Also times each
op alone, ours next to kornia's module for the same job where one exists. Best-of-N timings, so
other load on the machine inflates them less; still, compare only runs on a quiet machine.
Target (issue 4): `hflip,crop=4` under 15% of the step time. The policies (randaugment,
trivialaugment, autoaugment) and erasing are kornia's modules behind our op names (issue 14):
randaugment and trivialaugment are ours (data/policies.py: ops drawn per image), timed next to
kornia's RandAugment/TrivialAugment (ops drawn once per batch); autoaugment and erasing are
kornia's modules behind our names (the row shows our wrapper next to the bare module). Try
`--spec hflip,crop=4,randaugment` for a policy's share of a step.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def best_ms(fn, repeats: int) -> float:  # noqa: ANN001
    """Best wall time of fn() in milliseconds over `repeats` calls (after one warm-up)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def mean_ms(fn, repeats: int) -> float:  # noqa: ANN001
    """Mean wall time of fn() in milliseconds over `repeats` calls (after one warm-up)."""
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats * 1e3


def main() -> None:
    """Print the per-op table and the step overhead of hflip,crop=4."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--spec", default="hflip,crop=4")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import kornia.augmentation as K
    from kornia.augmentation import auto

    from cnnlab.data.augment import build_augment
    from cnnlab.models import build_model

    x = torch.rand(args.batch, 3, 32, 32)
    print(f"per op on [{args.batch},3,32,32], {args.threads} threads (best of {args.repeats}):")
    peers = {"hflip": K.RandomHorizontalFlip(), "vflip": K.RandomVerticalFlip(),
             "rotate=20": K.RandomRotation(20.0), "grayscale=0.5": K.RandomGrayscale(p=0.5),
             "jitter=0.2": K.ColorJitter(0.2, 0.2, 0.2, 0.0, p=1.0),
             "rrc=0.5": K.RandomResizedCrop((32, 32), scale=(0.5, 1.0)),
             "crop=4": K.RandomCrop((32, 32), padding=4),
             "blur=1": K.RandomGaussianBlur((7, 7), (0.1, 1.0), p=1.0), "noise=0.05": None,
             "randaugment=2:9": auto.RandAugment(n=2, m=9),
             "trivialaugment": auto.TrivialAugment(),
             "autoaugment": auto.AutoAugment("cifar10"),
             "erasing=0.25": K.RandomErasing(p=0.25)}
    for spec, peer in peers.items():
        fn = build_augment(spec)  # built once, as the trainer does
        ours = best_ms(lambda f=fn: f(x), args.repeats)
        other = f"{best_ms(lambda p=peer: p(x), args.repeats):8.3f}" if peer else "       -"
        print(f"  {spec:16s} cnnlab {ours:8.3f} ms   kornia module {other} ms")
    # A policy's cost depends on the ops drawn, and kornia draws them once per batch: the best
    # of N is then its cheapest draw, so the policies are also compared by their mean.
    print(f"policies, mean of {args.repeats} batches:")
    for spec, peer in (("randaugment=2:9", auto.RandAugment(n=2, m=9)),
                       ("trivialaugment", auto.TrivialAugment())):
        fn = build_augment(spec)
        ours = mean_ms(lambda f=fn: f(x), args.repeats)
        other = mean_ms(lambda p=peer: p(x), args.repeats)
        print(f"  {spec:16s} cnnlab (per image) {ours:8.3f} ms   kornia (per batch) "
              f"{other:8.3f} ms")

    model = build_model(args.model, 10, 3, 32)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    y = torch.randint(0, 10, (args.batch,))
    aug = build_augment(args.spec)

    def step(augment: bool) -> None:
        xb = aug(x) if augment else x
        loss = F.cross_entropy(model(xb), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    plain = best_ms(lambda: step(False), args.repeats)
    with_aug = best_ms(lambda: step(True), args.repeats)
    only = best_ms(lambda: aug(x), args.repeats)
    print(f"step of {args.model}: plain {plain:.2f} ms, with {args.spec} {with_aug:.2f} ms; "
          f"augmentation alone {only:.3f} ms = {100 * only / plain:.1f}% of a step "
          "(target < 15%)")


if __name__ == "__main__":
    main()
