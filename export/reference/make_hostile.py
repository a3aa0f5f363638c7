"""Hostile checkpoint fixtures for tests/errors.rs: pickles whose globals would run commands
if a reader executed them (ours never does). Usage: python3 make_hostile.py OUTDIR"""

import os
import pickle
import sys

import torch

MARKER = "/tmp/ldmae-hostile-pickle-ran"


class Command:
    """Pickles as a call of os.system(...) — harmless unless someone unpickles it with pickle."""

    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


class Builtin:
    """Pickles as builtins.eval(...)."""

    def __reduce__(self):
        return (eval, (f"open('{MARKER}', 'w')",))


def main(out):
    os.makedirs(out, exist_ok=True)
    weights = {"patch_embed.proj.weight": torch.zeros(4, 3, 8, 8)}
    # torch.save zip archive whose `model` entry is a command, next to real tensors.
    torch.save({"model": Command(), "extra": weights}, os.path.join(out, "system_call.pth"))
    # Legacy (non-zip) torch.save with an eval hidden inside the state dict.
    torch.save({"model": dict(weights, evil=Builtin())}, os.path.join(out, "eval_legacy.pth"),
               _use_new_zipfile_serialization=False)
    # A bare pickle (not torch.save) of a command.
    with open(os.path.join(out, "bare_pickle.pth"), "wb") as f:
        pickle.dump({"model": Command()}, f, protocol=2)


if __name__ == "__main__":
    main(sys.argv[1])
