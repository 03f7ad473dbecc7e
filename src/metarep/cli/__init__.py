"""Command-line interface: ``metarep run``, ``evaluate``, ``plot``, ``theory``, ``reproduce``, ``sweep``,
``bench`` and ``metarep fewshot ...``; ``metarep --version``.

One module per command (:mod:`.run`, :mod:`.bench`, :mod:`.evaluate`, :mod:`.plot`, :mod:`.theory`,
:mod:`.reproduce`, :mod:`.sweep`, :mod:`.fewshot`), the helpers they share in :mod:`.common`; this module only
assembles :data:`app`. Commands import the training stack when they run, not here.

Bad input exits with code 2 and a one-line ``error:`` message naming the key; no traceback. So does an
environment failure (a full disk, a read-only or vanished folder: any ``OSError`` a command does not
handle itself), and Ctrl-C outside a command's own handler exits 130 with one line.
Figures are built with ``matplotlib.figure.Figure`` (no pyplot), so no backend is chosen here.
"""

from __future__ import annotations

import signal
import sys

import typer
from typer.core import TyperGroup

try:  # typer >= 0.2x carries its own copy of click, whose exceptions its commands raise
    from typer._click import exceptions as click_errors
    from typer._click import utils as click_utils
except ImportError:  # pragma: no cover - older typer on the click package
    from click import exceptions as click_errors
    from click import utils as click_utils

from . import bench, demo, evaluate, plot, reproduce, run, sweep, theory
from .common import KEPT, Interrupts, discard_created, fail, one_line, os_error_line, user_errors
from .fewshot import fewshot_app

__all__ = ["app", "fail", "main", "user_errors"]


class OneLineUsageError(click_errors.UsageError):
    """A click usage error shown as one ``error: ...`` line (exit code 2) instead of the usage box."""

    def __init__(self, original: click_errors.UsageError) -> None:
        super().__init__(original.format_message(), original.ctx)
        self.exit_code = original.exit_code

    def show(self, file=None) -> None:
        discard_created()
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click_utils.echo(f"error: {one_line(self.message)}{hint}", err=True)


class OneLineErrors(TyperGroup):
    """The root group: usage errors of any command (bad option values, unknown options, missing
    arguments) become :class:`OneLineUsageError`; ``metarep`` alone still prints the help."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click_errors.NoArgsIsHelpError:
            raise
        except click_errors.UsageError as e:
            raise OneLineUsageError(e) from None

    def invoke(self, ctx):
        discard_created(forget=True)  # one command per call (in-process callers run several)
        Interrupts.last = None
        try:
            return super().invoke(ctx)
        except click_errors.NoArgsIsHelpError:
            raise
        except click_errors.UsageError as e:
            if isinstance(e, OneLineUsageError):
                raise
            raise OneLineUsageError(e) from None
        except OSError as e:  # the environment failed (full disk, read-only or vanished folder): one line
            fail(f"{os_error_line(e)}; {KEPT}")
        except ValueError as e:  # a module named in METAREP_PLUGINS failed, found where no command expects it
            registry = sys.modules.get("metarep.methods.registry")  # (loaded when it raised: no torch import here)
            if registry is None or not isinstance(e, registry.PluginError):
                raise
            fail(str(e))
        except KeyboardInterrupt:  # outside a command's own handler (click would say "Aborted!", exit 1)
            fail(f"interrupted; {KEPT}", code=128 + int(Interrupts.last or signal.SIGINT))  # 143: SIGTERM
        except Exception as e:  # the Dask scheduler lost mid-run (sweep, reproduce): the finished runs are kept
            executors = sys.modules.get("metarep.experiments.executors")  # loaded when it raised
            if executors is None or not isinstance(e, executors.SchedulerLost):
                raise
            fail(f"{e}; the runs finished before are whole and kept; run the same command again to resume", code=1)


app = typer.Typer(
    cls=OneLineErrors,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="metarep: meta-learning shared representations (FO-ANIL, ANIL, MAML and baselines).",
)


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"metarep {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """metarep: meta-learning shared representations (FO-ANIL, ANIL, MAML and baselines)."""


# the order of `metarep --help`
app.command("demo")(demo.demo)
app.command("run")(run.run)
app.command("bench")(bench.bench)
app.command("evaluate")(evaluate.evaluate)
app.command("plot")(plot.plot)
app.command("theory")(theory.theory)
app.command("reproduce")(reproduce.reproduce)
app.command("sweep")(sweep.sweep)
app.add_typer(fewshot_app, name="fewshot")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # outside a run's own handler
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
