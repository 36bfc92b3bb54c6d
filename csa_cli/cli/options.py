"""One definition of every option that several commands share: its flag, placeholder, default and help.

A command declares a shared option by calling it as the parameter's default; the call may name
another default only with the reason the command's purpose needs it, which the help then shows:

    def export(
        batch: str = options.BATCH(),                                       # the shared default (1)
        weights: str | None = options.WEIGHTS(None, why="the piped record's weights, else auto"),
    ) -> None: ...

    def profile(batch: str = options.BATCH("1,4,8,16", why="profile shows how latency scales with the batch")) -> None: ...

Placeholders follow one style everywhere: an upper-case noun (MODEL, FILE, DIR, N, LIST, ...),
alternatives joined by `|`; in the usage line typer puts `[...]` around an optional argument,
`{...}` around a required one and `...` after a repeatable one. Help sentences end with "Default: X." (and the reason, where the default is the
command's own). Examples at the end of each command's help come from `examples(...)`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import typer

_SAME: Any = object()

# What each kind of input is, for the help of a command's INPUT argument.
INPUT_KINDS = {
    "MODEL": "a zoo model (see `csa list`)",
    "ONNX": "an ONNX file",
    "ENGINE": "a TensorRT engine",
    "RECORD": "a record file (.json) of an earlier stage",
}

# What each precision means, for the help of --precision (each command takes some of them).
PRECISIONS = {
    "fp32": "fp32",
    "fp16": "fp16",
    "int8": "int8 (every Conv/Gemm/MatMul)",
    "mixed": "mixed (INT8, with the sensitive layers of the documented policy in FP16)",
}


@dataclass(frozen=True)
class SharedOption:
    """A shared option: call it (as a parameter default) to get the typer.Option a command declares."""

    flag: str
    metavar: str | None
    default: Any
    help: str
    shown: str | None = None  # how the default reads in help, when not the value itself
    envvar: str | None = None

    def __call__(self, default: Any = _SAME, *, why: str | None = None, shown: str | None = None, choices: tuple[str, ...] | None = None) -> Any:
        """The option for one command: the shared default, or `default` with `why` the command needs it.

        `shown` alone may stand in for `why` when it says the rule itself ("the piped record's, else auto")
        or reads as the shared default (a None that means it).
        """
        if default is not _SAME and default != self.default and not (why or shown):
            raise TypeError(f"{self.flag}: a command's own default ({default!r}) must say why (why=...)")
        value = self.default if default is _SAME else default
        text = self.help
        if choices is not None:
            text = " | ".join(PRECISIONS.get(c, c) for c in choices) + "."
        said = shown or (self.shown if default is _SAME else None) or (None if value is None else str(value))
        if said is not None and not isinstance(value, bool):
            text += f" Default: {said}" + (f" ({why})" if why else "") + "."
        elif why:
            text += f" ({why}.)"
        return typer.Option(value, *self.flag.split(" "), metavar=self.metavar, help=text, show_default=False, envvar=self.envvar)


def input_argument(*kinds: str, required: bool = False, stdin: bool = True) -> Any:
    """The INPUT argument of a stage: which kinds it takes (MODEL, ONNX, ENGINE, RECORD), one placeholder style."""
    said = ", ".join(INPUT_KINDS[k] for k in kinds)
    if stdin:
        said += "; or none, to read the record piped on stdin"
    return typer.Argument(... if required else None, metavar="|".join(kinds), help=said[0].upper() + said[1:] + ".", show_default=False)


def examples(*pairs: tuple[str, str]) -> str:
    """The epilog of a command's help: (what it shows, the command line) pairs, kept as written.

    `tests/test_help_examples.py` runs every line shown here.
    """
    lines = []
    for what, command in pairs:
        lines += [f"  # {what}", f"  {command}"]
    # \b keeps click from re-wrapping the paragraph that follows it
    return "Examples:\n\n\b\n" + "\n".join(lines)


def defaults_of(function: Callable[..., Any]) -> Any:
    """The defaults of a csa_cli.api function, by parameter name: the one definition a command and the API share.

    `D = defaults_of(api.quantize)`, then `calib_images: int = options.CALIB_IMAGES(D.calib_images)`;
    tests/test_api.py checks that every command's defaults are its function's.
    """
    params = inspect.signature(function).parameters.values()
    return SimpleNamespace(**{p.name: p.default for p in params if p.default is not inspect.Parameter.empty})


# ------------------------------------------------------------------------------- the shared options

MANIFEST = SharedOption("--manifest", "FILE", None, "A user manifest merged over the built-in zoo (also CSA_MANIFEST).", envvar="CSA_MANIFEST")
WEIGHTS = SharedOption(
    "--weights",
    "WEIGHTS",
    "auto",
    "pretrained (pulled and verified) | random (fixed seed, said on stderr) | auto (pretrained if already pulled, else random: never"
    " downloads) | PATH to a checkpoint (.safetensors, or .pth/.bin read with weights_only=True), for a MODEL input.",
)
BATCH = SharedOption("--batch", "LIST", "1", "Batch size, or a comma list of them (1,4,8,16): one static graph each.")
BATCH_SIZE = SharedOption("--batch-size", "N", 32, "Images per batch of the data loader (memory grows with it).")
IMG_SIZE = SharedOption("--img-size", "SIZE", None, "Input size N or HxW, for a MODEL.", shown="the model's eval size")
DYNAMIC_BATCH = SharedOption("--dynamic-batch", None, False, "Export with a dynamic batch axis instead of a static batch.")
LIMIT = SharedOption("--limit", "N", None, "Only the first N images, by file name (deterministic).", shown="all")
DATASET = SharedOption(
    "--dataset",
    "DATASET",
    None,
    "An ImageFolder DIR, imagenet-val (with --data-dir), or hf://datasets/OWNER/NAME[@REV][:SPLIT] (a Hub dataset, pulled and pinned).",
)
DATA_DIR = SharedOption("--data-dir", "DIR", None, "Where imagenet-val lives.", shown="CSA_DATA")
CALIB_DATASET = SharedOption("--calib-dataset", "DATASET", None, "Calibration images: the same forms as --dataset.", shown="--dataset")
CALIB_IMAGES = SharedOption("--calib-images", "N", 500, "Calibration images: a seeded, class-balanced sample.")
BACKEND = SharedOption(
    "--backend",
    "BACKEND",
    None,
    "torch | onnxruntime | tensorrt.",
    shown="what the input runs on: torch for a MODEL, onnxruntime for ONNX, tensorrt for an engine",
)
DEVICE = SharedOption("--device", "DEVICE", "auto", "auto | cpu | cuda | cuda:N.")
PRECISION = SharedOption("--precision", "PRECISION", "fp32", "fp32 | fp16 (torch on CUDA).")
THREADS = SharedOption("--threads", "N", None, "CPU threads of the backend.", shown="all cores")
ITERATIONS = SharedOption("--iterations", "N", None, "Timed iterations per batch size, instead of a time budget.", shown="a time budget (--seconds)")
SECONDS = SharedOption("--seconds", "S", None, "Time budget per batch size, in seconds (at least 5 iterations).", shown="2")
WARMUP = SharedOption("--warmup", "N", 3, "Warm-up iterations per batch size, not timed.")
MODEL = SharedOption("--model", "MODEL", None, "The zoo model a bare ONNX or weights file belongs to (its preprocessing).", shown="the input's")
TARGET = SharedOption("--target", "TARGET", "local", "local (build here with TensorRT) | orin (a self-contained bundle to build on the device).")
OUTPUT = SharedOption("--output", "PATH", None, "Also write the result here (atomically); an existing one is kept unless --force.", shown="only under CSA_HOME")
REPORT = SharedOption("--report", "DIR", None, "Write a markdown report (and PNG plots, where there are any) into DIR.")
FORCE = SharedOption("--force", None, False, "Replace an existing --output; go on despite a failed compliance check.")
RULES = SharedOption("--rules", "RULES", "restricted", "restricted (GPU safety scope) | dla (DLA standalone) | all.")
PLACEMENT = SharedOption(
    "--placement",
    "RUNTIME",
    "tensorrt",
    "Where Q/DQ pairs go: tensorrt (inputs of weighted ops; engines, bundles) | onnxruntime (inputs and outputs: integer kernels on CPU).",
)
CPU_INT8 = SharedOption(
    "--cpu-int8/--no-cpu-int8",
    None,
    True,
    "Also quantize with --placement onnxruntime and evaluate and time that graph on the CPU: the study's INT8 (ONNX Runtime CPU) row.",
)
