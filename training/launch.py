"""The launcher, a training entry point without the CLI package: `python -m training.launch sft --data FILE ...`.

Contract: the same flags as `assistant train ...` (see `training.options.FLAGS`; help and defaults from the config
fields), so a run can be started with `accelerate launch -m training.launch sft --data data.json` for
DDP/FSDP/DeepSpeed. It builds the settings (YAML
`--config`, environment, `--data-dir`), calls `training.runs.run_training` and prints the registered adapter as
JSON on the main process. Exit status 1 with a one-line message on an `AssistantError`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError
from assistant.settings import load_settings
from assistant.startup import start_up
from training.methods import METHOD_NAMES, METHODS
from training.options import BY_NAME, FLAGS, Flag, flag_default, flag_help, options_from_flags

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.launch", description="Train a LoRA adapter.")
    parser.add_argument("method", choices=METHOD_NAMES, help="Training method.")
    parser.add_argument("--data", nargs="+", type=Path, required=True, help="Data files (JSON, JSONL, CSV, SQuAD).")
    parser.add_argument("--config", type=Path, help="Platform settings YAML file.")
    parser.add_argument("--data-dir", type=Path, help="Data directory (database, models, adapters, runs).")
    parser.add_argument("--name", help="Adapter name in the registry (default <method>-adapter).")
    parser.add_argument("--base-adapter", help="Continue from this adapter (registry name[:vN], id, or directory).")
    parser.add_argument("--recipe", type=Path, help="YAML file of training options (config field: value).")
    parser.add_argument("--output", type=Path, help="Run directory (default <data_dir>/runs/<name>-<method>-<time>).")
    parser.add_argument("--resume", action="store_true", help="Resume from the run directory's last checkpoint.")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Any config field.")
    parser.add_argument("--job-id", help="Job id recorded with the adapter.")
    targets, qlora = BY_NAME["target_modules"], BY_NAME["load_in_4bit"]
    parser.add_argument(targets.option, metavar="MODULE,...", help=_help(targets))
    parser.add_argument(qlora.option, action="store_true", help=_help(qlora))
    for flag in FLAGS:
        parser.add_argument(flag.option, type=flag.type, help=_help(flag))
    return parser


def _help(flag: Flag) -> str:
    """The config field's help (`training.options.flag_help`) of the first method the flag applies to."""
    method = next(name for name, row in METHODS.items() if flag.name in row.flags)
    text = f"{flag_help(method, flag)} (default {flag_default(method, flag)})"
    return text.replace("%", "%%")  # argparse %-formats help texts


def request_from_args(args: argparse.Namespace) -> Any:
    from training.runs import TrainingRequest

    values = {flag.name: getattr(args, flag.name) for flag in FLAGS}
    options = options_from_flags(args.method, values, args.set, args.target_modules, args.load_in_4bit)
    return TrainingRequest(
        method=args.method,
        data_files=list(args.data),
        name=args.name,
        base_adapter=args.base_adapter,
        output_dir=args.output,
        resume=args.resume,
        recipe=args.recipe,
        options=options,
        job_id=args.job_id,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {"data_dir": args.data_dir} if args.data_dir else {}
    try:
        settings = load_settings(args.config, **overrides)
        start_up(settings)
        from training.runs import run_training

        outcome = run_training(settings, request_from_args(args))
    except AssistantError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return 1
    summary = outcome.summary()
    if summary is not None:
        sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
