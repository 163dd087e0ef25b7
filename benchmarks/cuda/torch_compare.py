"""Peers for ferry-cuda-bench on the same GPU: PyTorch's scaled_dot_product_attention
on the decode-attention shapes, and Hugging Face transformers `generate` on a
model directory written by `ferry make-model --format hf`.

  python3 benchmarks/cuda/torch_compare.py sdpa [--csv FILE]
  python3 benchmarks/cuda/torch_compare.py generate MODEL_DIR [--batches 1,16,64] [--new-tokens 128]
  python3 benchmarks/cuda/torch_compare.py check-attention   # SDPA vs a float64 reference, and vs paged layout
"""
import argparse
import sys
import time

import torch
import torch.nn.functional as F


def median_ms(fn, reps=30):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def sdpa(args):
    out = open(args.csv, "w") if args.csv else None
    if out:
        out.write("heads,kv_heads,head_dim,batch,context,ms,gbs\n")
    for heads, kvh, hd in [(32, 8, 128), (32, 4, 64)]:
        print(f"\nSDPA decode bf16, {heads}/{kvh} heads, head_dim {hd}: GB/s of KV read (ms)")
        print("| batch \\ context | 1k | 2k | 4k | 8k | 16k | 32k |\n|---|---:|---:|---:|---:|---:|---:|")
        for batch in [1, 8, 32, 64]:
            row = f"| {batch} |"
            for ctx in [1024, 2048, 4096, 8192, 16384, 32768]:
                q = torch.randn(batch, heads, 1, hd, device="cuda", dtype=torch.bfloat16)
                k = torch.randn(batch, kvh, ctx, hd, device="cuda", dtype=torch.bfloat16)
                v = torch.randn(batch, kvh, ctx, hd, device="cuda", dtype=torch.bfloat16)
                ms = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
                gbs = batch * ctx * kvh * hd * 2 * 2 / (ms * 1e-3) / 1e9
                row += f" {gbs:.0f} ({ms:.3f}) |"
                if out:
                    out.write(f"{heads},{kvh},{hd},{batch},{ctx},{ms:.5f},{gbs:.1f}\n")
                del q, k, v
            print(row, flush=True)
    torch.cuda.empty_cache()


def generate(args):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.bfloat16).cuda().eval()
    vocab = model.config.vocab_size
    print(f"\nHF transformers {__import__('transformers').__version__} generate, bf16, greedy, "
          f"{args.prompt_tokens}-token prompts, {args.new_tokens} new tokens")
    print("| batch | seconds | generated tok/s |\n|---:|---:|---:|")
    for batch in [int(b) for b in args.batches.split(",")]:
        ids = torch.randint(10, vocab - 10, (batch, args.prompt_tokens), device="cuda")
        kw = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
        with torch.no_grad():
            model.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(ids, **kw)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
        gen = (out.shape[1] - args.prompt_tokens) * batch
        print(f"| {batch} | {dt:.2f} | {gen / dt:.0f} |", flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sdpa")
    s.add_argument("--csv")
    g = sub.add_parser("generate")
    g.add_argument("model")
    g.add_argument("--batches", default="1,16,64")
    g.add_argument("--new-tokens", type=int, default=128)
    g.add_argument("--prompt-tokens", type=int, default=32)
    args = p.parse_args()
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
    {"sdpa": sdpa, "generate": generate}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
