#!/usr/bin/python3
"""Reference outputs for an upsampler whose audio conditioner has the released width.

    JUKEBOX_REF=DIR OMP_NUM_THREADS=2 /usr/bin/python3 tools/mkfixture_widecond.py OUT_DIR \
        [--refbench ../shared/tools/refbench] [--cond-width 1024] [--cond-depth 16] [--seed 1]
    build/bin/encore-parity OUT_DIR

Why: the fixture set in ../shared/fixtures has 32-channel conditioners, so it never reaches the
CPU backend's wide-layer kernels (Winograd F(4,3) and its transposed-conv form, taken when
channels in + out > 512). This writes a one-model folder in the same format (manifest.json +
checkpoints + .npy) from the original openai/jukebox code: the real 'upsampler_level_1'
hyper-parameters (n_ctx 8192, the 1024-wide, 16-deep, 2 x stride-2 conditioner, 2048 bins) with
a small transformer (width 64, depth 3) so that the files stay small and the forward is quick.

It writes the conditioning and teacher-forced tensors (y, y_cond, z_cond, x_cond, z,
transformer_input, layer_outputs, logits_forward). It does not write the sampling tensors
(cached, chunked and greedy paths): encore-parity reports those as FAIL "cannot load", which is
expected here; the lines that matter are x_cond and everything teacher-forced after it.

Needs Debian's python3-torch and python3-numpy, the reference checkout in $JUKEBOX_REF, and
refbench's refshim.py (CPU device redirection, nothing of the reference copied).
"""
import argparse
import json
import os
import sys


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--refbench", default=os.path.join(here, "..", "..", "shared", "tools", "refbench"))
    ap.add_argument("--cond-width", type=int, default=1024)
    ap.add_argument("--cond-depth", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--noise-std", type=float, default=0.02,
                    help="N(0, s^2) added to every parameter after the constructors, as the shared "
                         "fixtures do, so that zero-initialised weights matter too")
    args = ap.parse_args()

    sys.path.insert(0, os.path.abspath(args.refbench))
    import refshim  # noqa: E402
    refshim.install()
    import numpy as np  # noqa: E402
    import torch as t  # noqa: E402
    from jukebox.hparams import setup_hparams  # noqa: E402
    from jukebox.make_models import make_vqvae, make_prior  # noqa: E402

    key = "upsampler_level_1"
    over = dict(prior_width=64, prior_depth=3, heads=1, cond_width=args.cond_width,
                cond_depth=args.cond_depth, restore_prior="")
    hps = setup_hparams(key, over)
    t.manual_seed(args.seed)
    vq = make_vqvae(setup_hparams("vqvae", dict(sample_length=8192 * 32 * 4, restore_vqvae="")),
                    device="cpu")
    prior = make_prior(hps, vq, device="cpu")
    prior.eval()
    with t.no_grad():
        for p in prior.parameters():
            p.add_(t.randn(p.shape, dtype=t.float32).to(p.dtype) * args.noise_std)

    os.makedirs(os.path.join(args.out, key), exist_ok=True)
    ckpt = dict(hps=dict(hps), model=prior.state_dict(), step=0)
    legacy = os.path.join(key, "prior_level_1.pth.tar")
    zipped = os.path.join(key, "prior_level_1.zip.pth.tar")
    t.save(ckpt, os.path.join(args.out, legacy), _use_new_zipfile_serialization=False)
    t.save(ckpt, os.path.join(args.out, zipped))

    n_ctx, bins = int(prior.n_ctx), int(prior.prior.bins)
    g = t.Generator().manual_seed(args.seed + 1)
    z = t.randint(0, bins, (1, n_ctx), generator=g)
    z_cond = t.randint(0, bins, (1, n_ctx // prior.cond_downsample), generator=g)
    y = t.tensor([[240 * 44100, 30 * 44100, int(prior.sample_length), 145, 11, -1, -1, -1, -1]],
                 dtype=t.long)

    # the transformer's input and every block's output, by forward hooks on the reference modules
    captured = {}
    tr = prior.prior.transformer
    tr.register_forward_hook(lambda m, inp, out: captured.__setitem__("input", inp[0].clone()))
    for i, blk in enumerate(tr._attn_mods):
        blk.register_forward_hook(lambda m, inp, out, i=i: captured.__setitem__(i, out.clone()))
    with t.no_grad():
        x_cond, y_cond, _ = prior.get_cond([z_cond], y)
        _, metrics = prior.z_forward(z, [z_cond], y, get_preds=True)
    depth = len(tr._attn_mods)
    tensors = {
        "y.npy": y.numpy(),
        "z_cond.npy": z_cond.numpy(),
        "z.npy": z.numpy(),
        "y_cond.npy": y_cond.float().numpy(),
        "x_cond.npy": x_cond.float().numpy(),
        "transformer_input.npy": captured["input"].float().numpy(),
        "layer_outputs.npy": np.stack([captured[i].float().numpy() for i in range(depth)]),
        "layer_outputs_index.npy": np.arange(depth, dtype=np.int64),
        "logits_forward.npy": metrics["preds"].float().numpy(),
    }
    entry = {"files": {"checkpoint_legacy": {"path": legacy}, "checkpoint_zip": {"path": zipped}},
             "hps": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(hps).items()},
             "tensors": {}}
    for name, a in tensors.items():
        np.save(os.path.join(args.out, key, name), a)
        entry["tensors"][name] = {"shape": list(a.shape), "dtype": str(a.dtype)}
    manifest = {"generator": "tools/mkfixture_widecond.py: the original openai/jukebox code on CPU, "
                             "random weights, seed %d" % args.seed,
                "seed": args.seed, "models": {key: entry}}
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print("wrote %s: x_cond %s (std %.4f), logits %s" % (args.out, tuple(x_cond.shape),
          float(x_cond.std()), tuple(metrics["preds"].shape)))


if __name__ == "__main__":
    main()
