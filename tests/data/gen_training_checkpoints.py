#!/usr/bin/python3
"""Writes the small training-style checkpoints in tests/data/ (committed; CI does not run this).

OpenAI's released files are training checkpoints: besides 'model' they hold 'hps' (a
jukebox.hparams.Hyperparams object), 'step', metrics as numpy scalars and the optimizer state.
These files reproduce that layout around a tiny VQ-VAE (1 level, width 4, depth 1, 8 codes of
width 4), in both torch.save formats, so that test_import can check that `encore import` reads
'model' and passes over the rest without running anything.

    /usr/bin/python3 tests/data/gen_training_checkpoints.py tests/data   (Debian's python3-torch)
"""
import collections
import json
import os
import sys
import types

import numpy as np
import torch

# jukebox.hparams.Hyperparams, as the training code defines it (a dict with attribute access).
jukebox = types.ModuleType("jukebox")
hparams = types.ModuleType("jukebox.hparams")


class Hyperparams(dict):
    def __getattr__(self, attr):
        return self[attr]

    def __setattr__(self, attr, value):
        self[attr] = value


Hyperparams.__module__ = "jukebox.hparams"
hparams.Hyperparams = Hyperparams
jukebox.hparams = hparams
sys.modules["jukebox"] = jukebox
sys.modules["jukebox.hparams"] = hparams

HPS = dict(levels=1, downs_t=[1, 1, 1], strides_t=[2, 2, 2], hvqvae_multipliers=[1, 1, 1],
           width=4, depth=1, emb_width=4, l_bins=8, dilation_growth_rate=3,
           dilation_cycle=None, vqvae_reverse_decoder_dilation=True, m_conv=1.0)


def state_dict():
    W, E, B = HPS["width"], HPS["emb_width"], HPS["l_bins"]
    shapes = collections.OrderedDict()
    # encoder 0, level block 0: one down stage (k=4, s=2), one residual block, output conv
    shapes["encoders.0.level_blocks.0.model.0.0.weight"] = (W, 1, 4)
    shapes["encoders.0.level_blocks.0.model.0.0.bias"] = (W,)
    shapes["encoders.0.level_blocks.0.model.0.1.model.0.model.1.weight"] = (W, W, 3)
    shapes["encoders.0.level_blocks.0.model.0.1.model.0.model.1.bias"] = (W,)
    shapes["encoders.0.level_blocks.0.model.0.1.model.0.model.3.weight"] = (W, W, 1)
    shapes["encoders.0.level_blocks.0.model.0.1.model.0.model.3.bias"] = (W,)
    shapes["encoders.0.level_blocks.0.model.1.weight"] = (E, W, 3)
    shapes["encoders.0.level_blocks.0.model.1.bias"] = (E,)
    # decoder 0
    shapes["decoders.0.level_blocks.0.model.0.weight"] = (W, E, 3)
    shapes["decoders.0.level_blocks.0.model.0.bias"] = (W,)
    shapes["decoders.0.level_blocks.0.model.1.0.model.0.model.1.weight"] = (W, W, 3)
    shapes["decoders.0.level_blocks.0.model.1.0.model.0.model.1.bias"] = (W,)
    shapes["decoders.0.level_blocks.0.model.1.0.model.0.model.3.weight"] = (W, W, 1)
    shapes["decoders.0.level_blocks.0.model.1.0.model.0.model.3.bias"] = (W,)
    shapes["decoders.0.level_blocks.0.model.1.1.weight"] = (W, E, 4)
    shapes["decoders.0.level_blocks.0.model.1.1.bias"] = (E,)
    shapes["decoders.0.out.weight"] = (1, E, 3)
    shapes["decoders.0.out.bias"] = (1,)
    shapes["bottleneck.level_blocks.0.k"] = (B, E)
    g = torch.Generator().manual_seed(7)
    sd = collections.OrderedDict(
        (k, torch.randn(s, generator=g) * 0.3) for k, s in shapes.items())
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return sd


def checkpoint():
    sd = state_dict()
    params = [torch.nn.Parameter(t.clone()) for t in sd.values()]
    opt = torch.optim.Adam(params, lr=3e-4)
    for p in params:
        p.grad = torch.ones_like(p) * 0.01
    opt.step()
    hps = Hyperparams(HPS)
    hps.lr = np.float32(3e-4)  # numpy scalars inside hps: placeholders, never used
    hps.name = "tiny_vqvae"
    return {
        "hps": hps,
        "model": sd,
        "opt": opt.state_dict(),  # Adam: exp_avg/exp_avg_sq tensors, step, param_groups
        "step": 1234,
        "loss": np.float64(0.125),
        "metrics": {"spectral": np.float32(1.5), "commit": np.array([0.25, 0.5])},
        "ema": None,
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    ck = checkpoint()
    torch.save(ck, os.path.join(out, "train_vqvae_legacy.pth.tar"),
               _use_new_zipfile_serialization=False)
    torch.save(ck, os.path.join(out, "train_vqvae_zip.pth.tar"))
    hps = dict(HPS)
    with open(os.path.join(out, "train_vqvae_hps.json"), "w") as f:
        json.dump(hps, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
