"""The `contrastkit` command line. Thin: it parses arguments and imports the heavy parts lazily,
so `--help` and argument errors answer at once."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__
from .train.config import FIELDS, ConfigError, build_config, load_preset, parse_override

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _fail(message: str) -> int:
    print(f"contrastkit: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _list_losses(_: argparse.Namespace) -> int:
    """Print every loss function with its hyperparameters and defaults."""
    from . import losses

    for name, fn in losses.LOSS_FUNCTIONS.items():
        params = inspect.signature(fn).parameters.values()
        defaults = [f"{p.name}={p.default!r}" for p in params if p.default is not p.empty]
        print(f"{name:<14} {', '.join(defaults)}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    """Build the configuration from preset, options and overrides, then train."""
    from .data.datasets import CorruptImageError, DatasetNotFoundError

    try:
        layers = [load_preset(args.config)] if args.config else []
        layers.append({k: v for k, v in vars(args).items() if k in FIELDS and v is not None})
        layers.append(dict(parse_override(item) for item in args.overrides))
        config = build_config(layers)
        from .train.run import pretrain

        result = pretrain(config)
    except (ConfigError, DatasetNotFoundError, CorruptImageError) as error:
        return _fail(str(error))
    print(f"checkpoint: {result.checkpoint}")
    print(f"logs: {result.log_dir}/metrics.csv (CSV), {config.out_dir}/tensorboard (TensorBoard)")
    return 0


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One --option per configuration key; values are checked later, with the preset's."""
    for name, field in FIELDS.items():
        if name == "loss_options":
            continue
        flag = "--" + name.replace("_", "-")
        if field.type == "bool":
            parser.add_argument(flag, nargs="?", const="true", default=None, metavar="BOOL")
        else:
            parser.add_argument(flag, default=None, metavar=name.upper())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per job."""
    parser = _Parser(
        prog="contrastkit",
        description="Contrastive and self-supervised representation learning on images.",
    )
    parser.add_argument("--version", action="version", version=f"contrastkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    listing = commands.add_parser("losses", help="list the losses and their default settings")
    listing.set_defaults(run=_list_losses)
    train = commands.add_parser(
        "pretrain",
        help="pretrain an encoder (default: SimCLR on the embedded digits, CPU)",
        description="Pretrain an encoder. Options override --config; key=value (including "
        "loss.<option>=value) overrides both.",
    )
    train.add_argument("--config", help="a YAML preset, e.g. configs/cifar100_dcl.yaml")
    _add_config_options(train)
    train.add_argument("overrides", nargs="*", metavar="key=value")
    train.set_defaults(run=_pretrain)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
