"""The `contrastkit` command line. Thin: it parses arguments and imports the heavy parts lazily,
so `--help` and argument errors answer at once."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import __version__
from .errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_INTERRUPTED, ContrastkitError
from .export import FORMATS
from .names import LOSS_NAMES
from .runtime import configure_openmp
from .train.config import FIELDS, NAMED_KEYS, ConfigError, build_config, load_preset, parse_override

if TYPE_CHECKING:
    from .compare import CompareSpec
    from .train.config import PretrainConfig


def _one_line(message: str) -> str:
    """`message` with line breaks and other control characters (from user input) escaped.

    An error re-raised from a DataLoader worker carries the worker's traceback; only its last
    line, the original message, is kept.
    """
    if "\nOriginal Traceback" in message:
        message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2; each (sub-)command
    refuses its own unknown options, naming the closest valid one or listing them."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {_one_line(message)}\n")

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if isinstance(getattr(namespace, "overrides", None), list):
            # argparse leaves key=value pairs after an option unparsed; they are overrides too.
            namespace.overrides += [e for e in extras if not e.startswith("-")]
            extras = [e for e in extras if e.startswith("-")]
        if extras:
            options = [option for action in self._actions for option in action.option_strings]
            close = difflib.get_close_matches(extras[0].split("=")[0], options, 1, cutoff=0.7)
            hint = f"did you mean {close[0]}?" if close else f"valid: {', '.join(options)}"
            self.error(f"unrecognized arguments: {' '.join(extras)}; {hint}")
        return namespace, extras


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"contrastkit: error: {_one_line(message)}", file=sys.stderr)
    return code


def _write_failure(error: OSError) -> str:
    """One line for an I/O failure; a failed checkpoint write wins over what failed after it.

    Lightning finalises the loggers after a failure, and on a full disk their writes fail too,
    raising a new error whose context holds the checkpoint's.
    """
    from .fileio import CheckpointWriteError

    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, CheckpointWriteError):
            return str(cause)
        cause = cause.__context__
    return f"{error.filename}: {error.strerror}" if error.filename else str(error)


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
    layers = [load_preset(args.config)] if args.config else []
    layers.append({k: v for k, v in vars(args).items() if k in FIELDS and v is not None})
    layers.append(dict(parse_override(item) for item in args.overrides))
    data_dir = next((layer["data_dir"] for layer in reversed(layers) if "data_dir" in layer), None)
    if not args.print_config:  # which prints the configuration without reading any data
        _check_data_dir(data_dir)
    config = build_config(layers)
    if args.print_config:
        return _print_config(config)
    from .train.run import pretrain

    result = pretrain(config)
    if result.is_main:  # under DDP every rank runs this command
        print(f"checkpoint: {result.checkpoint}")
        for kind, folder in result.log_dirs.items():
            print(f"{kind} logs: {folder}")
    return 0


def _print_config(config: PretrainConfig) -> int:
    """Print the fully resolved configuration as JSON; nothing is loaded or trained."""
    import json

    from .train.resolved import resolved_values

    print(json.dumps(resolved_values(config), indent=2))
    return 0


def _compare(args: argparse.Namespace) -> int:
    """Run (or finish) a comparison grid and print its table."""
    from .compare import CompareSpec, parse_list

    if args.replay is not None:
        return _replay(args)
    try:
        seeds = parse_list(args.seeds, int) if args.seeds else None
    except ValueError:
        raise ConfigError(
            f"--seeds {args.seeds!r}: expected comma-separated whole numbers"
        ) from None
    _check_data_dir(args.data_dir)
    evaluation = [item for item in args.overrides if item.startswith(EVAL_PREFIX)]
    overrides = dict(parse_override(i) for i in args.overrides if i not in evaluation)
    for loss in parse_list(args.losses) if args.losses else ():
        if loss not in LOSS_NAMES:  # checked again, with the methods, once torch has loaded
            close = difflib.get_close_matches(loss, LOSS_NAMES, 3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"unknown loss {loss!r}; {hint}valid: {', '.join(LOSS_NAMES)}")
    spec = CompareSpec(
        **{
            key: value
            for key, value in (
                ("losses", parse_list(args.losses) if args.losses else None),
                ("dataset", args.dataset),
                ("data_dir", args.data_dir),
                ("backbone", args.backbone),
                ("epochs", _positive_int("epochs", args.epochs)),
                ("batch_size", _positive_int("batch-size", args.batch_size)),
                ("seeds", seeds),
                ("protocols", parse_list(args.protocol) if args.protocol else None),
                ("out", args.out),
            )
            if value is not None
        },
        overrides=overrides,
        eval_options=_compare_eval_options(evaluation),
    )
    return _run_compare(spec, args.rerun_changed)


EVAL_PREFIX = "eval."
"""compare's key=value pairs with this prefix are evaluation options, the others pretraining's."""


def _compare_eval_options(items: list[str]) -> dict[str, str]:
    """`eval.key=value` pairs as {key: value}."""
    options = {}
    for item in items:
        key, separator, value = item.removeprefix(EVAL_PREFIX).partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"{item!r}: expected eval.key=value")
        options[key.strip()] = value.strip()
    return options


def _run_compare(spec: CompareSpec, rerun_changed: bool = False) -> int:
    """Check the grid, run what is missing under the folder's lock, print the table."""
    from .compare import run_grid

    _check_compare(spec)
    _, table = run_grid(
        spec,
        log=lambda line: print(f"[compare] {line}", flush=True),
        rerun_changed=rerun_changed,
    )
    print(table.read_text())
    print(f"results: {table.parent}/results.md, results.csv, results.json and PNG plots")
    return 0


def _replay(args: argparse.Namespace) -> int:
    """Rerun the grid a results.json records into a new --out folder, warning of new versions."""
    from .compare.grid import spec_from_results, version_changes

    grid_flags = ("losses", "dataset", "data_dir", "backbone", "epochs", "batch_size", "seeds")
    given = [f"--{k.replace('_', '-')}" for k in (*grid_flags, "protocol") if getattr(args, k)]
    if given or args.overrides or args.rerun_changed:
        if args.rerun_changed:
            given.append("--rerun-changed")
        raise ConfigError(
            f"--replay takes the whole grid from {args.replay}; drop "
            f"{', '.join(given + args.overrides)}"
        )
    if args.out is None:
        raise ConfigError("--replay needs --out, a new folder for the rerun")
    spec = spec_from_results(args.replay, args.out)
    changes = version_changes(args.replay)
    if changes:
        print(
            f"contrastkit: warning: {args.replay} was made with other versions "
            f"({'; '.join(changes)}); figures may differ",
            file=sys.stderr,
        )
    return _run_compare(spec)


def _evaluate(args: argparse.Namespace) -> int:
    """Run one protocol on a checkpoint; print one line and write the JSON."""
    holdout = _fraction("holdout-fraction", args.holdout_fraction)
    if not args.checkpoint.startswith("random:") and not Path(args.checkpoint).is_file():
        raise ConfigError(f"--checkpoint {args.checkpoint}: no such checkpoint file")
    _check_data_dir(args.data_dir)
    from .eval import evaluate

    result = evaluate(
        args.checkpoint,
        args.protocol,
        features=args.features,
        dataset=args.dataset,
        data_dir=args.data_dir,
        out=args.out,
        seed=_eval_seed(args.seed),
        holdout_fraction=holdout,
        progress=True,
        **_eval_options(args),
    )
    extras = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in result.items()
        if k
        not in ("protocol", "features", "top1", "top5", "checkpoint", "out", "data_dir", "split")
    )
    print(
        f"{result['protocol']} ({result['features']}): top1={result['top1']:.4f} "
        f"top5={result['top5']:.4f} {extras}"
    )
    print(f"written: {result['out']}")
    return 0


EVAL_FLAGS = {
    "encoder": "online|target: the EMA target's networks when the method has one",
    "optimizer": "sgd|adamw (linear, finetune)",
    "lr": "peak learning rate",
    "weight_decay": "weight decay",
    "epochs": "training epochs",
    "batch_size": "samples per step",
    "schedule": "step|cosine|constant, after warmup_epochs",
    "selection": "last|best (best: on a validation split of the training split)",
    "augment": "true|false: crop + flip each epoch through the frozen encoder",
    "label_fraction": "few-shot: class-balanced seeded fraction of the labels",
    "per_class": "few-shot: labels per class",
    "resize": "resize before the centre crop (0: as trained)",
    "crop": "centre crop (0: as trained)",
}
"""The evaluation options that have their own --flag; every option also works as key=value."""


def _eval_options(args: argparse.Namespace) -> dict[str, str]:
    """Options from the --flags given, then key=value pairs (which win)."""
    options = {key: getattr(args, key) for key in EVAL_FLAGS if getattr(args, key) is not None}
    for item in args.overrides:
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"{item!r}: expected key=value")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def _eval_seed(raw: str | None) -> int:
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"--seed {raw!r}: expected a whole number") from None


def _export(args: argparse.Namespace) -> int:
    """Write the backbone (weights, TorchScript or ONNX) and a JSON sidecar describing it."""
    from .export import export_backbone, sidecar_path

    path = export_backbone(args.checkpoint, args.out, args.format)
    print(f"backbone ({args.format}): {path}")
    print(f"description (backbone, input, normalisation): {sidecar_path(path)}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    """Check a folder for unreadable images, or write a resized copy of it."""
    from .data.prepare import check_folder, resize_folder

    if args.format is not None:
        return _write_shards(args)
    if args.check == (args.max_side is not None):
        raise ConfigError("prepare: give either --check or --max-side N with --out DIR")
    if args.max_side is not None and args.out is None:
        raise ConfigError("prepare --max-side needs --out, the folder to write the copy into")
    if args.check:
        report = check_folder(args.folder, args.workers)
    else:
        report = resize_folder(args.folder, args.out, args.max_side, args.quality, args.workers)
    for path, reason in report.unreadable:
        print(f"unreadable: {path}: {reason}")
    done = "" if args.check else f"; {report.written} written, {report.skipped} already there"
    print(f"{len(report.unreadable)} of {report.total} files unreadable{done}")
    return EXIT_FAILURE if report.unreadable else 0


def _write_shards(args: argparse.Namespace) -> int:
    """Write a folder's splits as LitData or WebDataset shards under --out."""
    from .data.prepare import _progress
    from .data.shards import write_shards

    if args.out is None or args.check or args.max_side is not None:
        raise ConfigError("prepare --format needs --out DIR, and neither --check nor --max-side")
    report = write_shards(args.folder, args.out, args.format, args.shard_mb, _progress)
    for split, count in report.images.items():
        print(f"{split}: {count} images in {report.files[split]} files under {args.out}/{split}")
    return 0


def _positive_int(name: str, raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"--{name} {raw!r}: expected a whole number") from None
    if value < 1:
        raise ConfigError(f"--{name} {value}: must be >= 1")
    return value


def _fraction(name: str, raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"--{name} {raw!r}: expected a number in (0, 1)") from None
    if not 0.0 < value < 1.0:
        raise ConfigError(f"--{name} {value}: must be in (0, 1)")
    return value


def _check_data_dir(data_dir: str | None) -> None:
    """A data folder that does not exist, refused before torch loads (URLs: LitData's shards)."""
    if data_dir is None or "://" in str(data_dir):
        return
    if not Path(str(data_dir)).expanduser().exists():
        raise ConfigError(f"data_dir {data_dir}: no such folder")


def _check_compare(spec: CompareSpec) -> None:
    """Refuse unknown losses, protocols and pretraining settings before any work starts."""
    from .compare.grid import Entry, pretrain_values
    from .eval import PRESETS, PROTOCOLS, EvaluationError, protocol_options
    from .eval.presets import options_for, resolve
    from .methods import method_for_loss

    for loss in spec.losses:
        try:
            method_for_loss(loss)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    for protocol in spec.protocols:
        if protocol not in PROTOCOLS and protocol not in PRESETS:
            valid = ", ".join([*PROTOCOLS, *PRESETS])
            raise ConfigError(f"unknown protocol {protocol!r}; valid: {valid}")
    evaluated = list(dict.fromkeys([*spec.protocols, "metrics"]))  # compare always adds metrics
    for protocol in evaluated:
        try:  # the grid's evaluation options, checked before any pretraining
            name, _, options = resolve(protocol, None, options_for(protocol, spec.eval_options))
            protocol_options(name, options)
        except EvaluationError as error:
            raise ConfigError(str(error)) from None
    unused = [k for k in spec.eval_options if not any(options_for(p, {k: 0}) for p in evaluated)]
    if unused:
        raise ConfigError(f"eval.{unused[0]}: no protocol of {', '.join(evaluated)} takes it")
    if not spec.losses or not spec.seeds or not spec.protocols:
        raise ConfigError("--losses, --seeds and --protocol each need at least one value")
    for row in (*spec.losses, "supervised"):
        build_config([pretrain_values(spec, Entry(row, spec.seeds[0], Path(spec.out)))])


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One --option per configuration key, with its help, choices and default; values are
    checked later, with the preset's (argparse's own default stays None, so that an option
    left out does not override the preset)."""
    for name, field in FIELDS.items():
        if name in ("loss_options", "backbone_options"):
            continue
        flag = "--" + name.replace("_", "-")
        bool_form = {"nargs": "?", "const": "true", "metavar": "BOOL"}
        form = bool_form if field.type == "bool" else {"metavar": name.upper()}
        action = parser.add_argument(flag, default=None, help=_option_help(name, field), **form)
        action.names = _Choices(name)


class _Choices:
    """A key's valid names, read from their registry only when --help prints them (the
    registries import torch, which takes seconds)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __str__(self) -> str:
        from .train.config import choices

        return ", ".join(choices(self.key))


def _option_help(name: str, field: dataclasses.Field) -> str:
    """`what it does (choices: ...; default: ...)` in argparse's %-format; `%(names)s` is the
    option's `names` attribute, the choices."""
    parts = ["choices: %(names)s"] if name in NAMED_KEYS else []
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default
    parts.append(f"default: {default}".replace("%", "%%"))
    return f"{field.metadata['help'].replace('%', '%%')} ({'; '.join(parts)})"


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
        "loss.<option>=value and backbone.<kwarg>=value) overrides both.",
    )
    train.add_argument(
        "--config",
        help="a preset name (e.g. seed000/dhel) or a YAML file path",
    )
    train.add_argument(
        "--print-config",
        action="store_true",
        help="print the fully resolved configuration as JSON and exit, without training",
    )
    _add_config_options(train)
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="any configuration key, or loss.<option>=value for a loss hyperparameter",
    )
    train.set_defaults(run=_pretrain)

    compare = commands.add_parser(
        "compare",
        help="pretrain several losses under one budget and tabulate them (default: digits)",
        description="Pretrain each loss, plus an untrained and a supervised baseline, evaluate "
        "them alike and write results.md/.csv/.json and plots. Rerunning skips finished work. "
        "key=value pairs are pretraining settings applied to every run; eval.key=value pairs "
        "are evaluation options, given to every protocol that takes them.",
    )
    compare.add_argument("--losses", help="comma-separated (default: all ten)")
    compare.add_argument("--dataset")
    compare.add_argument("--data-dir")
    compare.add_argument("--backbone")
    compare.add_argument("--epochs")
    compare.add_argument("--batch-size")
    compare.add_argument("--seeds", help="comma-separated, e.g. 0,1,2")
    compare.add_argument(
        "--protocol",
        help="comma-separated protocols or presets (as evaluate's); the first gives Top-1/Top-5",
    )
    compare.add_argument("--out", help="output folder (default runs/compare)")
    compare.add_argument(
        "--replay", metavar="RESULTS_JSON", help="rerun the grid a results.json records into --out"
    )
    compare.add_argument(
        "--rerun-changed",
        action="store_true",
        help="rerun entries whose recorded settings differ from these into their own folders "
        "(<row>/seed<N>-<settings hash>) instead of refusing",
    )
    compare.add_argument("overrides", nargs="*", metavar="key=value")
    compare.set_defaults(run=_compare)

    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a checkpoint (linear, linear-sweep, logreg, knn, finetune, metrics, or a "
        "seed's protocol preset)",
        description="Evaluate a checkpoint (or random:<backbone>) on the dataset it was "
        "trained on, print one line of results and write them as JSON. Options override the "
        "preset's; key=value sets any option of the protocol.",
    )
    evaluate.add_argument(
        "--checkpoint",
        required=True,
        help="a .ckpt, or random:<backbone> (a built-in name, timm/<name> or torchvision/<name>, "
        "whose keyword arguments are backbone.<kwarg>=value)",
    )
    evaluate.add_argument(
        "--protocol",
        required=True,
        help="linear, linear-sweep, logreg, knn, finetune, metrics, or a preset: seed000, "
        "seed002-linear, seed003-supcon-linear, seed004-logreg",
    )
    evaluate.add_argument(
        "--features", choices=("backbone", "projector"), help="default: the preset's, or backbone"
    )
    evaluate.add_argument("--dataset")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument(
        "--out",
        help="JSON path (default: beside the checkpoint, "
        "eval_<protocol>_<features>_<dataset>[-<data dir hash>].json)",
    )
    evaluate.add_argument(
        "--holdout-fraction",
        metavar="FRACTION",
        help="evaluate on the last FRACTION of each class of train/ (trained on the rest) "
        "instead of the test split, e.g. 0.1 for a folder without test/",
    )
    evaluate.add_argument("--seed", help="fixes every random draw (default 0)")
    for key, text in EVAL_FLAGS.items():
        evaluate.add_argument("--" + key.replace("_", "-"), dest=key, help=text)
    evaluate.add_argument("overrides", nargs="*", metavar="key=value")
    evaluate.set_defaults(run=_evaluate)

    export = commands.add_parser(
        "export",
        help="write a checkpoint's backbone (weights, TorchScript or ONNX) and a JSON sidecar",
        description="Write the backbone alone and, beside it as <out>.json, its name and "
        "options, input size, channels and normalisation.",
    )
    export.add_argument("--checkpoint", required=True, help="a .ckpt, or random:<backbone>")
    export.add_argument("--out", required=True, help="output file (.pt, .ts or .onnx)")
    export.add_argument(
        "--format",
        default="state_dict",
        choices=FORMATS,
        help="state_dict: weights under torchvision's names (default); torchscript: "
        "torch.jit.load-able; onnx: needs the onnx extra",
    )
    export.set_defaults(run=_export)
    prepare = commands.add_parser(
        "prepare",
        help="check an image folder for unreadable files, write a resized copy, or shards",
        description="--check lists every unreadable image file under FOLDER in one pass (exit "
        "1 if any); --max-side N --out DIR writes a JPEG copy with the same layout whose longer "
        "sides are at most N, resuming where an interrupted run stopped; --format litdata|"
        "webdataset --out DIR writes shards (encoded images as they are, labels, class names).",
    )
    prepare.add_argument("folder", help="an image folder, e.g. an ImageNet train/ tree")
    prepare.add_argument("--check", action="store_true", help="list unreadable files")
    prepare.add_argument("--max-side", type=int, help="longer side of the copy's images")
    prepare.add_argument("--out", help="folder for the resized copy")
    prepare.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    prepare.add_argument("--workers", type=int, help="processes (default: one per CPU)")
    prepare.add_argument(
        "--format",
        help="litdata or webdataset: write the folder's train/ and val/ (or test/) as shards "
        "under --out, for --data-dir on many machines",
    )
    prepare.add_argument(
        "--shard-mb", type=float, default=64.0, help="shard size in MB (default 64)"
    )
    prepare.set_defaults(run=_prepare)
    # [further commands]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    # Before the command loads torch (OpenMP reads these once), and only for a command that
    # runs: the load sample costs 0.2 s that --help and argument errors need not wait for.
    configure_openmp()
    try:
        return args.run(args)
    except ContrastkitError as error:
        if error.exit_code == EXIT_INTERRUPTED:
            print(f"contrastkit: {_one_line(str(error))}", file=sys.stderr)
            return error.exit_code
        return _fail(str(error), error.exit_code)
    except OSError as error:  # a write failed during the run: full disk, folder removed
        return _fail(_write_failure(error), EXIT_FAILURE)
    except KeyboardInterrupt:  # outside training (which saves and says where it stopped)
        print("contrastkit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
