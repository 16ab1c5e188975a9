"""PyTorch peer of bench/lm/bench_lm.c: the same Llama model, prompt and
greedy generation, timed the same way.

The weights come from the Hugging Face folder that `bench_lm --save-hf DIR`
writes (config.json and an F32 model.safetensors). The forward pass and
the KV cache are written here on plain torch operations, as
transformers' LlamaForCausalLM computes them (RMSNorm, split-half rotary
positions, causal attention, SwiGLU), because Debian has no transformers
package.

    /usr/bin/python3 bench/lm/torch_lm.py DIR [--threads N] [--prompt N]
                                              [--gen N] [--repeats N]

Prints one line per repeat and a summary line

    torch type f32 threads N prompt_tok_s X gen_tok_s Y ids I1,I2,...

with the medians over repeats and the first 16 generated ids.
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--gen", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = Llama(args.folder)
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
