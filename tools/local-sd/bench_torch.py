#!/usr/bin/env python3
"""The PyTorch side of plugins/local-sd/benches/sd15.rs: SD 1.5's UNet and VAE decoder built
from the same configs with random weights, timed the same way (one warm-up, median of N).

    tools/.venv/bin/python tools/local-sd/bench_torch.py [--device cpu|cuda] [--precision fp32|fp16] [--iters N]
"""

import argparse
import json
import statistics
import time

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

UNET = dict(act_fn="silu", attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280], cross_attention_dim=768,
            down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2,
            mid_block_scale_factor=1, norm_eps=1e-05, norm_num_groups=32, out_channels=4, sample_size=64,
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"])
VAE = dict(act_fn="silu", block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
           in_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, out_channels=3, sample_size=512,
           up_block_types=["UpDecoderBlock2D"] * 4)


def timed(label, fn, iters, sync):
    with torch.no_grad():
        fn()
        sync()
        times = []
        for _ in range(iters):
            start = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - start)
    med = statistics.median(times)
    print(f"{label}: median {med:.3f} s over {iters} runs (min {min(times):.3f} s, {1 / med:.2f} it/s)")
    return med


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    p.add_argument("--iters", type=int, default=3)
    a = p.parse_args()
    dtype = torch.float16 if a.precision == "fp16" else torch.float32
    dev = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
    print(f"torch {torch.__version__}, device {dev}, threads {torch.get_num_threads()}, precision {a.precision}")
    unet = UNet2DConditionModel(**UNET).to(dev, dtype).eval()
    vae = AutoencoderKL(**VAE).to(dev, torch.float32).eval()
    sample = torch.randn(2, 4, 64, 64, device=dev, dtype=dtype)
    ctx = torch.randn(2, 77, 768, device=dev, dtype=dtype)
    lat = torch.randn(1, 4, 64, 64, device=dev)
    t = torch.tensor(500, device=dev)
    timed("unet 512x512 batch 2", lambda: unet(sample, t, encoder_hidden_states=ctx).sample, a.iters, sync)
    timed("vae decode 512x512", lambda: vae.decode(lat).sample, a.iters, sync)
    if dev.type == "cuda":
        print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
