"""Refit a trained text encoder's sentence-embedding head by least squares (seedance/models/text_head.py).

    python pipelines/refit_text_head.py --text-encoder runs/te_s7k/export --data runs/te_s7k/data \
        --sentences 60000 --out runs/te_s7k/refit

--data is the distillation recipe's data folder (corpus.json, extra.json and the teacher's embeddings of both
in teacher.safetensors), so the teacher is not run again and no held-out text is used. Half the sentences are
training captions, half general English (when the run had any), drawn with a fixed seed. Writes text_encoder/
(fp16, embedding_pooling="layers") and tokenizer/ to --out; the token states and pooled vector are unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from seedance.errors import SeedanceError  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--text-encoder", type=Path, required=True, help="folder with text_encoder/ and tokenizer/")
    p.add_argument("--data", type=Path, required=True, help="the distillation run's data/ folder")
    p.add_argument("--sentences", type=int, default=60000, help="training sentences the head is fitted on")
    p.add_argument("--ridge", type=float, default=10.0, help="ridge penalty on the head's weights")
    p.add_argument("--out", type=Path, required=True, help="write text_encoder/ and tokenizer/ here")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.sentences < 1 or not args.ridge >= 0:
        p.error("--sentences must be positive and --ridge 0 or more")
    return args


def training_sentences(data: Path, n: int, seed: int) -> tuple[list[str], torch.Tensor]:
    """n sentences of the run's training text with their cached teacher embeddings: half captions, half extra."""
    from safetensors.torch import load_file

    for name in ("corpus.json", "teacher.safetensors"):
        if not (data / name).is_file():
            raise SeedanceError(f"{data / name} is missing: pass the data/ folder of a train_text_encoder.py run")
    teacher = load_file(str(data / "teacher.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    pools = [(json.loads((data / "corpus.json").read_text()), teacher["train"])]
    if (data / "extra.json").is_file() and "extra" in teacher:
        pools.append((json.loads((data / "extra.json").read_text()), teacher["extra"]))
    texts, embeds = [], []
    for k, (pool, emb) in enumerate(pools):
        take = min(len(pool), n // len(pools) + (n % len(pools) if k == 0 else 0))
        idx = torch.randperm(len(pool), generator=gen)[:take]
        texts += [pool[i] for i in idx.tolist()]
        embeds.append(emb[idx].float())
    return texts, torch.cat(embeds)


def main(argv: list[str] | None = None) -> int:
    from pipelines.train_text_encoder import export
    from seedance.models.io import load_component
    from seedance.models.text_encoder import EngramMoETextEncoder
    from seedance.models.text_head import refit_embedding_head
    from seedance.models.tokenizer import SeedanceTokenizer

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    tokenizer = SeedanceTokenizer.from_pretrained(args.text_encoder / "tokenizer")
    model = load_component(EngramMoETextEncoder, args.text_encoder / "text_encoder").float().eval()
    texts, teacher = training_sentences(args.data, args.sentences, args.seed)
    print(f"fitting the embedding head on {len(texts)} training sentences ...")
    refit = refit_embedding_head(model, tokenizer, texts, teacher, args.ridge)
    with torch.no_grad():
        cos = (refit.encode(tokenizer, texts[:2000]) * teacher[:2000]).sum(-1).mean()
    info_file = args.text_encoder / "text_encoder" / "train_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    info["head_refit"] = {"sentences": len(texts), "ridge": args.ridge, "seconds": round(time.time() - t0, 1),
                          "train_cosine_first_2000": round(float(cos), 4), "argv": sys.argv[1:] if argv is None
                          else list(argv)}
    export(refit, tokenizer, args.out, info)
    print(f"wrote {args.out}/text_encoder and tokenizer (cosine on 2,000 of its sentences {float(cos):.4f})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SeedanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
