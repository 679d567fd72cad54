"""`seedance app`: start the web app (what `make app` runs).

    seedance app                         # http://127.0.0.1:7860, weights/seedance-tiny
    seedance app --port 8000 --weights my-model/
    seedance app --host 0.0.0.0          # reachable from other machines: only on a network you trust

The model is loaded once, before the server starts; a missing generator still
starts the app (Evaluate works, the generation tabs explain what to train).
"""

from __future__ import annotations

import argparse
import logging

from seedance.errors import SeedanceError
from seedance.generate_cli import DEFAULT_WEIGHTS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from app.validate import MAX_MEDIA_SECONDS, MAX_UPLOAD_MB

    app = subparsers.add_parser("app", help="start the web app (generate, dub, lip-sync, evaluate, text encoder)")
    app.add_argument("--host", default=DEFAULT_HOST,
                     help=f"address to bind (default {DEFAULT_HOST}: this machine only)")
    app.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    app.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="model folder (save_pretrained layout)")
    app.add_argument("--share", choices=("no", "yes"), default="no",
                     help="make a public gradio.live link (default no; needs internet)")
    app.add_argument("--concurrency", type=int, default=1, help="generation requests run at once (default 1)")
    app.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB, help=f"per file (default {MAX_UPLOAD_MB})")
    app.add_argument("--max-media-s", type=float, default=MAX_MEDIA_SECONDS,
                     help=f"longest upload in seconds (default {MAX_MEDIA_SECONDS:g})")
    app.add_argument("--steps", type=int, default=None, help="initial steps in the UI (default: the model's)")
    app.add_argument("--compile", action="store_true",
                     help="torch.compile the transformer at start (seconds to a minute once; every clip is then "
                          "faster)")
    app.set_defaults(func=run_app)


def check_args(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise SeedanceError(f"--port must be between 0 and 65535, got {args.port}")
    if args.concurrency < 1:
        raise SeedanceError(f"--concurrency must be at least 1, got {args.concurrency}")
    if not args.max_upload_mb > 0 or not args.max_media_s > 0:
        raise SeedanceError("--max-upload-mb and --max-media-s must be positive")
    if args.steps is not None and args.steps < 1:
        raise SeedanceError(f"--steps must be at least 1, got {args.steps}")


def run_app(args: argparse.Namespace) -> int:
    from app.service import SeedanceService
    from app.ui import build_app
    from app.validate import Limits

    check_args(args)
    logging.getLogger("seedance.app").setLevel(logging.INFO)
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 2**20), max_media_seconds=float(args.max_media_s))
    service = SeedanceService(args.weights, limits=limits).load()
    if not service.has_generator:
        print(f"warning: {service.load_error}")
    elif args.compile:
        from seedance.generate_cli import compile_if_asked

        compile_if_asked(service.pipe, args)
    service.warm_up()
    demo = build_app(service, default_steps=args.steps, concurrency=args.concurrency)
    try:
        _, local_url, share_url = demo.launch(server_name=args.host, server_port=args.port,
                                              share=args.share == "yes", max_file_size=limits.max_upload_bytes,
                                              show_error=True, quiet=True, prevent_thread_lock=True)
    except OSError as exc:
        raise SeedanceError(f"cannot serve on {args.host}:{args.port}: {str(exc).splitlines()[0]}; "
                            "pick another --port") from None
    service.settle()
    print(f"Seedance app on {local_url}" + (f" and {share_url}" if share_url else "") + " (Ctrl+C stops it)",
          flush=True)
    try:
        demo.block_thread()
    finally:
        demo.close()
    return 0
