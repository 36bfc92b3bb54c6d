"""The Python API: one function per stage, the same options (names, defaults) and records as the commands.

    import csa_cli as csa

    onnx = csa.export("csa-tiny", weights="random")
    bundle = csa.engine(csa.quantize(onnx, calib_dataset="~/imagenet/val"), precision="mixed", target="orin")

Each function takes a zoo model name, a path, or the record an earlier call returned, and returns
the record its command prints (`csa export` prints the "onnx" record `export()` returns; `profile`
returns the list of records `csa profile` prints, one per input). The commands in csa_cli/cli/ are
thin wrappers over these functions: they take their defaults from these signatures
(`cli.options.defaults_of`), parse the command line, and render what comes back.

Errors are the exceptions of csa_cli.errors (`CsaError` exit 1, `UsageError` 2, `CheckFailed` 3,
`MissingBackend` 4). Where a stage made something before it failed (a non-compliant check's
verdict, an eval under `min_top1`, a run's stages) the exception's `record` holds it. Nothing is
printed: progress goes to `on_event` (the csa_cli.events.Event objects the CLI renders), or nowhere.

torch, onnx and the Hub client are imported by the stages when they run: `import csa_cli` stays light.
The *_detail / *_results / *_study functions give what the commands render besides the
record (a check's every finding, a run's live summary); they are not part of `csa_cli`'s surface.
"""

from csa_cli.api._common import OnEvent
from csa_cli.api.chains import compare, compare_study, run
from csa_cli.api.measure import evaluate, predict, profile, profile_results
from csa_cli.api.publish import push
from csa_cli.api.stages import check, check_detail, engine, export, pull, quantize
from csa_cli.api.training import Interrupted, train

__all__ = ["Interrupted", "OnEvent", "check", "compare", "engine", "evaluate", "export", "predict", "profile", "pull", "push", "quantize", "run", "train"]
_RENDERED_BY_THE_CLI = (check_detail, compare_study, profile_results)  # imported for csa_cli.cli, not exported
