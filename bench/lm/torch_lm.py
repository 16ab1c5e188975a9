"""PyTorch peer of bench/lm/bench_lm.c: the same Llama model, prompt and
greedy generation, or training step, timed the same way.

The weights come from the Hugging Face folder that `bench_lm --save-hf DIR`
writes (config.json and an F32 model.safetensors). The forward pass and
the KV cache are written here on plain torch operations, as
transformers' LlamaForCausalLM computes them (RMSNorm, split-half rotary
positions, causal attention, SwiGLU), because Debian has no transformers
package.

    /usr/bin/python3 bench/lm/torch_lm.py DIR [--threads N] [--prompt N]
                                              [--gen N] [--repeats N]
    /usr/bin/python3 bench/lm/torch_lm.py DIR --train [--threads N]
                                              [--batch B] [--length T] [--steps N]

Inference prints one line per repeat and a summary line

    torch type f32 threads N prompt_tok_s X gen_tok_s Y ids I1,I2,...

with the medians over repeats and the first 16 generated ids. --train
times the step of `bench_lm --train`: mean next-token cross-entropy of a
[B, T] batch of fixed ids, backward, and torch.optim.AdamW (lr 1e-4,
defaults otherwise, as mr_optim_config_default gives), after one untimed
step, and prints

    torch train threads N tok_s X first_loss L cpu_ms_min C cpu_ms_median M

with the same fields as bench_lm: C and M are the least and the median
process CPU time of one timed step in milliseconds.
"""
import argparse
import json
import os
import statistics
import struct
import time

import torch


def load_safetensors(path):
    """Tensors of an F32 safetensors file, by name."""
    with open(path, "rb") as f:
        data = f.read()
    header_len = struct.unpack_from("<Q", data, 0)[0]
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {entry['dtype']}; only F32 is read")
        start, end = entry["data_offsets"]
        flat = torch.frombuffer(bytearray(data[base + start:base + end]), dtype=torch.float32)
        tensors[name] = flat.reshape(entry["shape"])
    return tensors


class Llama:
    """A Llama decoder with a KV cache of fixed length."""

    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            self.config = json.load(f)
        c = self.config
        self.w = load_safetensors(os.path.join(folder, "model.safetensors"))
        self.layers = c["num_hidden_layers"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c["num_key_value_heads"]
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads
        self.eps = c["rms_norm_eps"]
        half = self.head_dim // 2
        self.inv_freq = 1.0 / (c["rope_theta"] ** (torch.arange(half, dtype=torch.float32) / half))
        out = "lm_head.weight" if "lm_head.weight" in self.w else "model.embed_tokens.weight"
        self.out_weight = self.w[out]

    def rms_norm(self, x, weight):
        variance = x.pow(2).mean(-1, keepdim=True)
        return x * torch.rsqrt(variance + self.eps) * weight

    def rope(self, x, positions):
        """x [H, T, D] rotated at positions [T], split-half layout."""
        angles = positions[:, None].float() * self.inv_freq[None, :]
        cos = torch.cat([angles.cos(), angles.cos()], -1)
        sin = torch.cat([angles.sin(), angles.sin()], -1)
        half = self.head_dim // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    def train_loss(self, tokens, targets):
        """Mean next-token cross-entropy of tokens [B, T] against targets [B, T]."""
        batch, t_len = tokens.shape
        positions = torch.arange(t_len)
        x = self.w["model.embed_tokens.weight"][tokens]
        group = self.heads // self.kv_heads
        mask = torch.ones(t_len, t_len, dtype=torch.bool).tril()
        for i in range(self.layers):
            p = f"model.layers.{i}."
            h = self.rms_norm(x, self.w[p + "input_layernorm.weight"])
            q = (h @ self.w[p + "self_attn.q_proj.weight"].T).view(batch, t_len, self.heads, -1)
            k = (h @ self.w[p + "self_attn.k_proj.weight"].T).view(batch, t_len, self.kv_heads, -1)
            v = (h @ self.w[p + "self_attn.v_proj.weight"].T).view(batch, t_len, self.kv_heads, -1)
            q = self.rope(q.transpose(1, 2), positions)
            k = self.rope(k.transpose(1, 2), positions).repeat_interleave(group, 1)
            v = v.transpose(1, 2).repeat_interleave(group, 1)
            scores = q @ k.transpose(2, 3) / self.head_dim ** 0.5
            scores = scores.masked_fill(~mask, float("-inf"))
            att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, t_len, -1)
            x = x + att @ self.w[p + "self_attn.o_proj.weight"].T
            h = self.rms_norm(x, self.w[p + "post_attention_layernorm.weight"])
            gate = h @ self.w[p + "mlp.gate_proj.weight"].T
            up = h @ self.w[p + "mlp.up_proj.weight"].T
            x = x + (torch.nn.functional.silu(gate) * up) @ self.w[p + "mlp.down_proj.weight"].T
        logits = self.rms_norm(x, self.w["model.norm.weight"]) @ self.out_weight.T
        return torch.nn.functional.cross_entropy(logits.reshape(batch * t_len, -1),
                                                 targets.reshape(-1))

    def new_cache(self, length):
        shape = (self.layers, self.kv_heads, length, self.head_dim)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(self, tokens, pos, cache):
        """Logits of the last of tokens [T] at positions pos..pos+T-1."""
        keys, values = cache
        t_len = tokens.shape[0]
        positions = torch.arange(pos, pos + t_len)
        x = self.w["model.embed_tokens.weight"][tokens]
        group = self.heads // self.kv_heads
        for i in range(self.layers):
            p = f"model.layers.{i}."
            h = self.rms_norm(x, self.w[p + "input_layernorm.weight"])
            q = (h @ self.w[p + "self_attn.q_proj.weight"].T).view(t_len, self.heads, -1)
            k = (h @ self.w[p + "self_attn.k_proj.weight"].T).view(t_len, self.kv_heads, -1)
            v = (h @ self.w[p + "self_attn.v_proj.weight"].T).view(t_len, self.kv_heads, -1)
            q = self.rope(q.transpose(0, 1), positions)
            keys[i, :, pos:pos + t_len] = self.rope(k.transpose(0, 1), positions)
            values[i, :, pos:pos + t_len] = v.transpose(0, 1)
            k_all = keys[i, :, :pos + t_len].repeat_interleave(group, 0)
            v_all = values[i, :, :pos + t_len].repeat_interleave(group, 0)
            scores = q @ k_all.transpose(1, 2) / self.head_dim ** 0.5
            mask = torch.ones(t_len, pos + t_len, dtype=torch.bool).tril(pos)
            scores = scores.masked_fill(~mask, float("-inf"))
            att = (scores.softmax(-1) @ v_all).transpose(0, 1).reshape(t_len, -1)
            x = x + att @ self.w[p + "self_attn.o_proj.weight"].T
            h = self.rms_norm(x, self.w[p + "post_attention_layernorm.weight"])
            gate = h @ self.w[p + "mlp.gate_proj.weight"].T
            up = h @ self.w[p + "mlp.up_proj.weight"].T
            x = x + (torch.nn.functional.silu(gate) * up) @ self.w[p + "mlp.down_proj.weight"].T
        last = self.rms_norm(x[-1], self.w["model.norm.weight"])
        return last @ self.out_weight.T


def run_once(model, prompt_len, gen_len):
    """Run one repeat; return tokens/s of the prompt and of generation, and the ids."""
    vocab = model.config["vocab_size"]
    prompt = torch.tensor([(i * 7919 + 13) % vocab for i in range(prompt_len)])
    cache = model.new_cache(prompt_len + gen_len)
    generated = []
    with torch.no_grad():
        start = time.perf_counter()
        logits = model.forward(prompt, 0, cache)
        middle = time.perf_counter()
        next_id = int(logits.argmax())
        for i in range(gen_len):
            generated.append(next_id)
            logits = model.forward(torch.tensor([next_id]), prompt_len + i, cache)
            next_id = int(logits.argmax())
        end = time.perf_counter()
    return prompt_len / (middle - start), gen_len / (end - middle), generated


def run_training(model, batch, length, steps):
    """Run steps + 1 training steps, the first untimed.

    Return tokens/s over the wall time, the first loss, and the process CPU
    time of each timed step in seconds.
    """
    vocab = model.config["vocab_size"]
    sequence = torch.tensor([(i * 7919 + 13) % vocab for i in range(batch * length + 1)])
    tokens = sequence[:-1].view(batch, length)
    targets = sequence[1:].view(batch, length)
    params = list({id(t): t for t in model.w.values()}.values())
    for t in params:
        t.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    first_loss = None
    start = None
    step_cpu = []
    for step in range(steps + 1):
        if step == 1:
            start = time.perf_counter()
        step_start = time.process_time()
        loss = model.train_loss(tokens, targets)
        loss.backward()
        if step == 0:
            first_loss = float(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        if step > 0:
            step_cpu.append(time.process_time() - step_start)
    elapsed = time.perf_counter() - start
    return batch * length * steps / elapsed, first_loss, step_cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--gen", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train", action="store_true", help="time training steps instead")
    parser.add_argument("--batch", type=int, default=4, help="training sequences per step")
    parser.add_argument("--length", type=int, default=64, help="training tokens per sequence")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = Llama(args.folder)
    if args.train:
        tok_s, first_loss, step_cpu = run_training(model, args.batch, args.length, args.steps)
        print(f"torch train threads {args.threads} tok_s {tok_s:.1f} first_loss {first_loss:.6f}"
              f" cpu_ms_min {1e3 * min(step_cpu):.1f}"
              f" cpu_ms_median {1e3 * statistics.median(step_cpu):.1f}")
        return
    prompt_rates, gen_rates = [], []
    for r in range(args.repeats):
        prompt_rate, gen_rate, generated = run_once(model, args.prompt, args.gen)
        prompt_rates.append(prompt_rate)
        gen_rates.append(gen_rate)
        print(f"repeat {r}: prompt {prompt_rate:.1f} tokens/s, generation {gen_rate:.1f} tokens/s")
    ids = ",".join(str(i) for i in generated[:16])
    print(f"torch type f32 threads {args.threads} prompt_tok_s {statistics.median(prompt_rates):.1f} "
          f"gen_tok_s {statistics.median(gen_rates):.1f} ids {ids}")


if __name__ == "__main__":
    main()
