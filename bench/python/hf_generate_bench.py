#!/usr/bin/env python3
"""Hugging Face transformers bf16 `generate` with a static KV cache on a random-weight model of a
Llama-3 shape: the baseline flatfleet's GPU engine is compared with on the same machine (the
numbers go to bench/RESULTS.md beside `flatfleet bench`'s).

Runs `--requests` prompts of `--input-len` random tokens in batches of `--batch`, greedy,
`--output-len` new tokens each (no early stop), and prints output tokens/s.
Usage (GPU machine): python3 bench/python/hf_generate_bench.py --arch llama-3-8b --requests 256 \
    --batch 128 --input-len 1000 --output-len 200
"""
import argparse
import time

import torch
import transformers

SHAPES = {
    "llama-3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                       rope_theta=500000.0),
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                 num_attention_heads=8, num_key_value_heads=4, vocab_size=512),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", default="llama-3-8b", choices=sorted(SHAPES))
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--input-len", type=int, default=1000)
    parser.add_argument("--output-len", type=int, default=200)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**SHAPES[args.arch],
                                      max_position_embeddings=args.input_len + args.output_len + 8,
                                      torch_dtype=torch.bfloat16)
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16).eval()
    generation = transformers.GenerationConfig(
        max_new_tokens=args.output_len, min_new_tokens=args.output_len, do_sample=False,
        cache_implementation="static", pad_token_id=0, eos_token_id=None)
    # Warm-up (kernel selection, cache allocation) on one small batch.
    warm = torch.randint(1, config.vocab_size, (args.batch, args.input_len), device="cuda")
    model.generate(warm, generation_config=transformers.GenerationConfig(
        max_new_tokens=4, do_sample=False, cache_implementation="static", pad_token_id=0,
        eos_token_id=None))
    torch.cuda.synchronize()
    produced = 0
    start = time.perf_counter()
    for first in range(0, args.requests, args.batch):
        rows = min(args.batch, args.requests - first)
        prompts = torch.randint(1, config.vocab_size, (rows, args.input_len), device="cuda")
        with torch.inference_mode():
            out = model.generate(prompts, generation_config=generation)
        produced += (out.shape[1] - args.input_len) * rows
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    print(f"hf generate {args.arch} bf16 static cache: {args.requests} requests x "
          f"({args.input_len} + {args.output_len}) tokens, batch {args.batch}: "
          f"{elapsed:.1f} s, output {produced / elapsed:.0f} tok/s, "
          f"total {(produced + args.requests * args.input_len) / elapsed:.0f} tok/s "
          f"(torch {torch.__version__}, transformers {transformers.__version__})")


if __name__ == "__main__":
    main()
