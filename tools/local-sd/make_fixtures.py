#!/usr/bin/env python3
"""Build the tiny random-weight diffusers pipelines and the reference outputs that the Rust
parity tests in `plugins/local-sd/tests/` compare against.

Run by hand, never in CI (CI needs no Python):

    python3 -m venv tools/.venv
    tools/.venv/bin/pip install -r tools/local-sd/requirements.txt
    tools/.venv/bin/python tools/local-sd/make_fixtures.py

It writes `plugins/local-sd/tests/fixtures/<name>/` for each pipeline: the pipeline in diffusers
layout (weights as fp16 safetensors, so the fixtures stay small; the references are computed in
fp32 from those same fp16-rounded weights) and `reference.safetensors` + `cases.json` with the
inputs and outputs of each component and of full pipelines per scheduler. It also writes
`plugins/local-sd/tests/fixtures/torch_randn.safetensors` for the seed-compatibility tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "plugins" / "local-sd" / "tests" / "fixtures"

# A small corpus to learn BPE merges from; the prompts in the tests use these words.
CORPUS = """
a photo of an astronaut riding a horse on mars, highly detailed, 8k
a watercolor painting of a cat sitting in a garden with flowers
portrait of a dog wearing sunglasses, studio lighting, sharp focus
a castle on a hill at sunset, fantasy art, trending on artstation
blurry, low quality, ugly, deformed, watermark, text
an old man reading a book by the window, oil painting
a red car driving through the city at night with neon lights
""".split()


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_tiny_clip_bpe(num_merges: int = 160) -> tuple[dict[str, int], list[str]]:
    """A CLIP-style BPE vocabulary: 256 byte symbols, the same with `</w>`, learned merges and
    the two special tokens last, as in openai/clip-vit-large-patch14."""
    byte_encoder = bytes_to_unicode()
    symbols = list(byte_encoder.values())
    vocab_list = symbols + [s + "</w>" for s in symbols]
    words = Counter()
    for w in CORPUS:
        w = w.lower().strip(",")
        if not w:
            continue
        chars = [byte_encoder[b] for b in w.encode("utf-8")]
        chars[-1] = chars[-1] + "</w>"
        words[tuple(chars)] += 1
    merges: list[str] = []
    for _ in range(num_merges):
        pairs = Counter()
        for word, freq in words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] += freq
        if not pairs:
            break
        # Deterministic: highest count, then lexicographic.
        (a, b), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        merges.append(f"{a} {b}")
        vocab_list.append(a + b)
        new_words = Counter()
        for word, freq in words.items():
            out = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += freq
        words = new_words
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab_list)}, merges


def write_tokenizer(directory: Path, vocab: dict[str, int], merges: list[str], pad_token: str) -> CLIPTokenizer:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tok = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], pad_token=pad_token, model_max_length=77)
    tok.save_pretrained(directory)
    # Keep only the files the diffusers layout carries for the slow tokenizer; our loader reads
    # vocab.json + merges.txt + the two config files.
    for extra in ["tokenizer.json", "chat_template.jinja"]:
        (directory / extra).unlink(missing_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return tok


def round_to_fp16_(module: torch.nn.Module) -> None:
    """Round every parameter through fp16, so the fp16 files on disk hold exactly the weights
    the fp32 references were computed with."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
        for b in module.buffers():
            if b.dtype.is_floating_point:
                b.copy_(b.half().float())


def scale_weights_(module: torch.nn.Module, gain: float) -> None:
    """Random init gives near-constant outputs in deep tiny nets; widen the spread a little so
    the parity tests see varied values."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() > 1:
                p.mul_(gain)
            elif name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.05)
            elif name.endswith("weight"):
                p.copy_(1.0 + torch.randn_like(p) * 0.1)


SCHEDULERS = {
    "ddim": lambda cfg: DDIMScheduler.from_config(cfg),
    "pndm": lambda cfg: PNDMScheduler.from_config(cfg),
    "euler": lambda cfg: EulerDiscreteScheduler.from_config(cfg),
    "euler_a": lambda cfg: EulerAncestralDiscreteScheduler.from_config(cfg),
    "dpmpp_2m": lambda cfg: DPMSolverMultistepScheduler.from_config(cfg),
    "dpmpp_2m_karras": lambda cfg: DPMSolverMultistepScheduler.from_config(cfg, use_karras_sigmas=True),
}


def sd_scheduler_config(prediction_type: str) -> dict:
    return PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
        timestep_spacing="leading",
    ).config


def build_sd(name: str, *, v_prediction: bool, inpaint_unet: bool = False) -> None:
    """SD 1.x-like (epsilon, quick_gelu CLIP, conv projections) or SD 2.x-like (v-prediction,
    gelu CLIP, linear projections, per-block head dims); `inpaint_unet` gives the UNet 9 input
    channels (latents, mask, masked-image latents) as in the SD inpainting checkpoints."""
    out = FIXTURES / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    vocab, merges = build_tiny_clip_bpe()
    pad = "!" if v_prediction else "<|endoftext|>"
    tokenizer = write_tokenizer(out / "tokenizer", vocab, merges, pad)

    torch.manual_seed(0)
    text_config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=3,
        max_position_embeddings=77,
        hidden_act="gelu" if v_prediction else "quick_gelu",
        projection_dim=32,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab[pad],
        layer_norm_eps=1e-5,
    )
    text_encoder = CLIPTextModel(text_config).eval()
    scale_weights_(text_encoder, 1.0)

    torch.manual_seed(1)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=9 if inpaint_unet else 4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4) if v_prediction else 2,
        use_linear_projection=v_prediction,
        upcast_attention=v_prediction,
        norm_num_groups=8,
    ).eval()
    scale_weights_(unet, 1.5)

    torch.manual_seed(2)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    ).eval()
    scale_weights_(vae, 1.3)

    for m in (text_encoder, unet, vae):
        round_to_fp16_(m)

    scheduler = PNDMScheduler.from_config(sd_scheduler_config("v_prediction" if v_prediction else "epsilon"))
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)

    # Save the weights as fp16 (what most published checkpoints ship); configs stay as they are.
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    pipe.to(torch.float32)
    # Re-write the tokenizer files: save_pretrained writes the fast tokenizer's files.
    write_tokenizer(out / "tokenizer", vocab, merges, pad)

    refs: dict[str, torch.Tensor] = {}
    cases: dict = {"pipelines": []}

    # --- tokenizer + text encoder -------------------------------------------------------------
    prompts = ["a photo of an astronaut riding a horse on mars", "Blurry,  LOW quality!", ""]
    cases["prompts"] = prompts
    ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    refs["clip.input_ids"] = ids.to(torch.int64)
    with torch.no_grad():
        enc = text_encoder(ids, output_hidden_states=True)
    refs["clip.last_hidden_state"] = enc.last_hidden_state.contiguous()
    refs["clip.pooler_output"] = enc.pooler_output.contiguous()
    refs["clip.penultimate_hidden_state"] = enc.hidden_states[-2].contiguous()

    # --- one UNet evaluation, batch 2 (uncond + cond, as with guidance) --------------------------
    g = torch.Generator("cpu").manual_seed(3)
    sample = torch.randn((2, unet.config.in_channels, 8, 8), generator=g)
    t = torch.tensor(801, dtype=torch.int64)
    ehs = enc.last_hidden_state[:2].flip(0).contiguous()
    with torch.no_grad():
        unet_out = unet(sample, t, encoder_hidden_states=ehs).sample
    refs["unet.sample"] = sample
    refs["unet.timestep"] = t.reshape(1)
    refs["unet.encoder_hidden_states"] = ehs
    refs["unet.out"] = unet_out.contiguous()

    # --- VAE ---------------------------------------------------------------------------------
    g = torch.Generator("cpu").manual_seed(4)
    image = torch.rand((1, 3, 32, 32), generator=g) * 2 - 1
    with torch.no_grad():
        dist = vae.encode(image).latent_dist
        latents = torch.randn((1, 4, 16, 16), generator=g)
        decoded = vae.decode(latents).sample
    refs["vae.image"] = image
    refs["vae.encode_mean"] = dist.mean.contiguous()
    refs["vae.encode_logvar"] = dist.logvar.contiguous()
    refs["vae.decode_in"] = latents
    refs["vae.decode_out"] = decoded.contiguous()

    # --- full pipelines ------------------------------------------------------------------------
    base_config = pipe.scheduler.config
    if inpaint_unet:
        add_inpaint_cases(pipe, base_config, refs, cases, prompts)
        save_file({k: v.contiguous() for k, v in refs.items()}, out / "reference.safetensors")
        (out / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
        print(f"wrote {out}")
        return
    for sched_name, make in SCHEDULERS.items():
        pipe.scheduler = make(base_config)
        for mode in ["txt2img"]:
            key = f"{mode}.{sched_name}"
            kwargs = dict(
                prompt=prompts[0],
                negative_prompt="blurry, low quality",
                height=32,
                width=32,
                num_inference_steps=4,
                guidance_scale=7.5,
                num_images_per_prompt=1,
            )
            with torch.no_grad():
                latents = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(1234), output_type="latent").images
                img = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(1234), output_type="np").images
            refs[f"{key}.latents"] = latents.contiguous()
            refs[f"{key}.image"] = torch.from_numpy(np.ascontiguousarray(img))
            cases["pipelines"].append({"key": key, "mode": mode, "scheduler": sched_name, "seed": 1234, **kwargs})

    # Two images per prompt: one generator draws both latents in one randn call.
    pipe.scheduler = SCHEDULERS["euler_a"](base_config)
    kwargs = dict(prompt=prompts[0], negative_prompt="", height=32, width=32, num_inference_steps=3, guidance_scale=5.0, num_images_per_prompt=2)
    with torch.no_grad():
        img = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(99), output_type="np").images
    refs["txt2img_n2.euler_a.image"] = torch.from_numpy(np.ascontiguousarray(img))
    cases["pipelines"].append({"key": "txt2img_n2.euler_a", "mode": "txt2img", "scheduler": "euler_a", "seed": 99, **kwargs})

    # img2img with strength.
    img2img = StableDiffusionImg2ImgPipeline(**pipe.components, requires_safety_checker=False)
    img2img.set_progress_bar_config(disable=True)
    for sched_name in ["ddim", "euler_a"]:
        img2img.scheduler = SCHEDULERS[sched_name](base_config)
        g = torch.Generator("cpu").manual_seed(5)
        init = (torch.rand((1, 3, 32, 32), generator=g) * 2 - 1)
        kwargs = dict(prompt=prompts[0], negative_prompt="", num_inference_steps=5, guidance_scale=7.5, strength=0.6)
        with torch.no_grad():
            img = img2img(image=init, **kwargs, generator=torch.Generator("cpu").manual_seed(77), output_type="np").images
        key = f"img2img.{sched_name}"
        refs[f"{key}.init_image"] = init
        refs[f"{key}.image"] = torch.from_numpy(np.ascontiguousarray(img))
        cases["pipelines"].append({"key": key, "mode": "img2img", "scheduler": sched_name, "seed": 77, **kwargs})

    if v_prediction:
        # SD-Turbo style: trailing timesteps, one or two Euler-ancestral steps, no guidance.
        for steps in [1, 2]:
            pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(base_config, timestep_spacing="trailing")
            kwargs = dict(prompt=prompts[0], height=32, width=32, num_inference_steps=steps, guidance_scale=0.0)
            with torch.no_grad():
                img = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(2024), output_type="np").images
            key = f"turbo{steps}.euler_a"
            refs[f"{key}.image"] = torch.from_numpy(np.ascontiguousarray(img))
            cases["pipelines"].append({"key": key, "mode": "txt2img", "scheduler": "euler_a", "timestep_spacing": "trailing", "seed": 2024, **kwargs})
    else:
        # Inpainting with an ordinary UNet: latent mask blending.
        add_inpaint_cases(pipe, base_config, refs, cases, prompts)

    save_file({k: v.contiguous() for k, v in refs.items()}, out / "reference.safetensors")
    (out / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"wrote {out}")


def add_inpaint_cases(pipe, base_config, refs, cases, prompts) -> None:
    inpaint = StableDiffusionInpaintPipeline(**pipe.components, requires_safety_checker=False)
    inpaint.set_progress_bar_config(disable=True)
    g = torch.Generator("cpu").manual_seed(6)
    init = torch.rand((1, 3, 32, 32), generator=g) * 2 - 1
    mask = torch.zeros((1, 1, 32, 32))
    mask[:, :, 8:24, 4:20] = 1.0
    for sched_name, strength in [("euler_a", 1.0), ("ddim", 0.75)]:
        inpaint.scheduler = SCHEDULERS[sched_name](base_config)
        kwargs = dict(prompt=prompts[0], negative_prompt="", height=32, width=32, num_inference_steps=4, guidance_scale=7.5, strength=strength)
        with torch.no_grad():
            img = inpaint(image=init, mask_image=mask, **kwargs, generator=torch.Generator("cpu").manual_seed(88), output_type="np").images
        key = f"inpaint.{sched_name}"
        refs[f"{key}.init_image"] = init.clone()
        refs[f"{key}.mask"] = mask.clone()
        refs[f"{key}.image"] = torch.from_numpy(np.ascontiguousarray(img))
        cases["pipelines"].append({"key": key, "mode": "inpaint", "scheduler": sched_name, "seed": 88, **kwargs})


def build_sdxl(name: str = "sdxl") -> None:
    """SDXL-like: two text encoders (the second with a projection and `!` padding), their
    second-to-last layers concatenated, the pooled projection and size/crop ids as added
    conditioning (`addition_embed_type = "text_time"`), several transformer layers per block."""
    out = FIXTURES / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    vocab, merges = build_tiny_clip_bpe()
    tokenizer = write_tokenizer(out / "tokenizer", vocab, merges, "<|endoftext|>")
    tokenizer_2 = write_tokenizer(out / "tokenizer_2", vocab, merges, "!")

    def text_config(hidden: int, act: str, pad: str) -> CLIPTextConfig:
        return CLIPTextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=37, num_attention_heads=4,
                              num_hidden_layers=3, max_position_embeddings=77, hidden_act=act, projection_dim=24,
                              bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
                              pad_token_id=vocab[pad], layer_norm_eps=1e-5)

    torch.manual_seed(10)
    text_encoder = CLIPTextModel(text_config(32, "quick_gelu", "<|endoftext|>")).eval()
    scale_weights_(text_encoder, 1.0)
    torch.manual_seed(11)
    text_encoder_2 = CLIPTextModelWithProjection(text_config(32, "gelu", "!")).eval()
    scale_weights_(text_encoder_2, 1.0)
    torch.manual_seed(12)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        cross_attention_dim=64,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24 + 6 * 8,
        norm_num_groups=8,
    ).eval()
    scale_weights_(unet, 1.5)
    torch.manual_seed(13)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), layers_per_block=1,
                        latent_channels=4, norm_num_groups=8, sample_size=16, scaling_factor=0.13025).eval()
    scale_weights_(vae, 1.3)
    for m in (text_encoder, text_encoder_2, unet, vae):
        round_to_fp16_(m)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, steps_offset=1, timestep_spacing="leading",
                                       prediction_type="epsilon", interpolation_type="linear", use_karras_sigmas=False)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    pipe.to(torch.float32)
    write_tokenizer(out / "tokenizer", vocab, merges, "<|endoftext|>")
    write_tokenizer(out / "tokenizer_2", vocab, merges, "!")

    refs: dict[str, torch.Tensor] = {}
    cases: dict = {"pipelines": []}
    prompts = ["a photo of an astronaut riding a horse on mars", "Blurry,  LOW quality!", ""]
    cases["prompts"] = prompts
    ids = tokenizer_2(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    refs["clip2.input_ids"] = ids.to(torch.int64)
    with torch.no_grad():
        enc = text_encoder_2(ids, output_hidden_states=True)
    refs["clip2.text_embeds"] = enc.text_embeds.contiguous()
    refs["clip2.penultimate_hidden_state"] = enc.hidden_states[-2].contiguous()

    # One UNet evaluation with the added conditioning.
    g = torch.Generator("cpu").manual_seed(3)
    sample = torch.randn((2, 4, 8, 8), generator=g)
    ehs = torch.randn((2, 77, 64), generator=g)
    text_embeds = torch.randn((2, 24), generator=g)
    time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0], [32.0, 48.0, 4.0, 8.0, 32.0, 32.0]])
    with torch.no_grad():
        unet_out = unet(sample, torch.tensor(601), encoder_hidden_states=ehs,
                        added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
    refs.update({"unet.sample": sample, "unet.encoder_hidden_states": ehs, "unet.text_embeds": text_embeds,
                 "unet.time_ids": time_ids, "unet.timestep": torch.tensor([601]), "unet.out": unet_out.contiguous()})

    base_config = pipe.scheduler.config
    for sched_name, negative in [("euler", None), ("euler_a", "blurry, low quality"), ("dpmpp_2m_karras", None)]:
        pipe.scheduler = SCHEDULERS[sched_name](base_config)
        kwargs = dict(prompt=prompts[0], negative_prompt=negative, height=32, width=32, num_inference_steps=4, guidance_scale=5.0)
        with torch.no_grad():
            latents = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(31), output_type="latent").images
            img = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(31), output_type="np").images
        key = f"txt2img.{sched_name}"
        refs[f"{key}.latents"] = latents.contiguous()
        refs[f"{key}.image"] = torch.from_numpy(np.ascontiguousarray(img))
        cases["pipelines"].append({"key": key, "mode": "txt2img", "scheduler": sched_name, "seed": 31,
                                   **{**kwargs, "negative_prompt": negative or ""}})
    save_file({k: v.contiguous() for k, v in refs.items()}, out / "reference.safetensors")
    (out / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"wrote {out}")


def build_vae_tiled() -> None:
    """diffusers' tiled VAE decode (`enable_tiling`) on the committed sd1 VAE, whose
    `sample_size` of 16 makes the tiles tiny: 8x8 latents, 6 apart, blended over 4 pixels. A
    20x28 latent gives a 4x5 grid with ragged last tiles. Reads `fixtures/sd1/vae`, so run it
    after `--only sd1` (and regenerate it whenever sd1 changes)."""
    vae = AutoencoderKL.from_pretrained(FIXTURES / "sd1" / "vae", torch_dtype=torch.float32).eval()
    g = torch.Generator("cpu").manual_seed(5)
    latents = torch.randn((1, 4, 20, 28), generator=g)
    with torch.no_grad():
        untiled = vae.decode(latents).sample
        vae.enable_tiling()
        tiled = vae.decode(latents).sample
    refs = {
        "latents": latents,
        "tiled": tiled.contiguous(),
        "untiled": untiled.contiguous(),
        "tile_latent": torch.tensor([vae.tile_latent_min_size], dtype=torch.int64),
    }
    save_file(refs, FIXTURES / "vae_tiled.safetensors")
    print(f"wrote {FIXTURES / 'vae_tiled.safetensors'}")


def build_randn() -> None:
    refs = {}
    for seed in [0, 42, 1234, 2**32 + 7]:
        for n in [5, 16, 37, 256, 1000]:
            g = torch.Generator("cpu").manual_seed(seed)
            refs[f"f32.{seed}.{n}"] = torch.randn(n, generator=g)
            g = torch.Generator("cpu").manual_seed(seed)
            refs[f"f16.{seed}.{n}"] = torch.randn(n, generator=g, dtype=torch.float16)
    # A full SD latent (1x4x64x64): enough values to exercise every rounding path.
    for seed in [7, 123456789]:
        g = torch.Generator("cpu").manual_seed(seed)
        refs[f"f32.{seed}.16384"] = torch.randn(16384, generator=g)
        g = torch.Generator("cpu").manual_seed(seed)
        refs[f"f16.{seed}.16384"] = torch.randn(16384, generator=g, dtype=torch.float16)
    # Two draws from one generator continue the stream.
    g = torch.Generator("cpu").manual_seed(42)
    a = torch.randn(64, generator=g)
    b = torch.randn(40, generator=g)
    refs["f32.42.64+40"] = torch.cat([a, b])
    save_file(refs, FIXTURES / "torch_randn.safetensors")
    meta = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    (FIXTURES / "torch_randn.json").write_text(json.dumps(meta, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["randn", "sd1", "sd2", "sd1-inpaint", "sdxl", "vae-tiled"], help="build one fixture set only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "randn"):
        build_randn()
    if args.only in (None, "sd1"):
        build_sd("sd1", v_prediction=False)
    if args.only in (None, "vae-tiled"):
        build_vae_tiled()
    if args.only in (None, "sd2"):
        build_sd("sd2", v_prediction=True)
    if args.only in (None, "sd1-inpaint"):
        build_sd("sd1-inpaint", v_prediction=False, inpaint_unet=True)
    if args.only in (None, "sdxl"):
        build_sdxl()


if __name__ == "__main__":
    main()
