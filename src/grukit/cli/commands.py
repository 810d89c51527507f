"""Commands: tasks, train TASK, eval, predict, generate. Each parses and calls the library."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import typing
from pathlib import Path

import click

from ..tasks import TASKS, get_task
from ..tasks.base import load_run, run_task_name
from ..training.loop import STATE_FILE
from ..training.runtime import Runtime, stop_on_sigterm
from . import bench, build, export, report  # noqa: F401
from .main import main


@main.command("tasks", short_help="List the tasks and their built-in data sets.")
def tasks_cmd() -> None:
    """List the tasks and their built-in data sets."""
    for task in TASKS.values():
        click.echo(f"{task.name:10s} {task.summary}")
        for name, desc in task.datasets.items():
            click.echo(f"{'':12s}--dataset {name}: {desc}")


@main.group("train", short_help="Train a task's GRU and write a run directory.")
def train_group() -> None:
    """Train a task's GRU and write a run directory (see `grukit tasks`)."""


def _click_type(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Union or (origin is not None and type(None) in typing.get_args(tp)):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _finite(param, value: float) -> float:
    """click's FloatRange lets NaN through (every comparison with it is false)."""
    if value != value:
        raise click.BadParameter(f"must be a number, got {value}", param=param)
    return value


def _claim_out(out: Path, overwrite: bool) -> Path | None:
    """--out must be new or empty; an existing run is replaced only with --overwrite, anything else never.

    The run being replaced is moved aside (returned) and deleted only once the new run has
    trained an epoch, so a new run that fails early leaves the old one in place."""
    if str(out) in ("", "."):
        raise click.UsageError("--out must name a run directory, got the current directory")
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    try:
        other = run_task_name(out)
    except (OSError, ValueError):
        raise click.UsageError(f"--out {out} is not empty and holds no grukit run; choose a new directory") from None
    if not overwrite:
        raise click.UsageError(
            f"--out {out} already holds a {other!r} run; choose a new directory, continue it with --resume {out}, "
            "or replace it with --overwrite"
        )
    aside = out.with_name(f".{out.name}.replaced-{os.getpid()}")
    out.rename(aside)
    return aside


def _settle(out: Path, aside: Path | None, fresh: bool) -> bool:
    """After a run ends or fails: a new run that never finished an epoch is removed (and the run it
    was replacing put back); otherwise the replaced run is deleted. True if the new run was kept."""
    started = (out / STATE_FILE).exists()
    if fresh and not started:
        shutil.rmtree(out, ignore_errors=True)
        if aside is not None:
            aside.rename(out)
        return False
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return True


def _train_command(task):
    hints = typing.get_type_hints(task.Config)

    def run(out, resume, overwrite, as_json, **values):
        if resume is not None:
            if out is not None and Path(out) != Path(resume):
                raise click.UsageError("--resume continues a run in place: give --resume DIR without a different --out")
            if run_task_name(Path(resume)) != task.name:
                raise click.UsageError(f"--resume {resume} is a {run_task_name(Path(resume))!r} run, not {task.name!r}")
            cfg, _ = load_run(Path(resume), task)
            explicit = {
                k: v
                for k, v in values.items()
                if click.get_current_context().get_parameter_source(k).name == "COMMANDLINE"
            }
            cfg = dataclasses.replace(cfg, **explicit)
            out = resume
        elif out is None:
            raise click.UsageError("give --out DIR (where the run is written) or --resume DIR")
        else:
            cfg = task.Config(**values)
            cfg.validate()
        runtime = Runtime.from_env()  # several processes under torchrun; only rank 0 touches the run directory
        fresh, aside = resume is None, None
        if fresh and runtime.writer:
            aside = _claim_out(Path(out), overwrite)
        try:
            with stop_on_sigterm(runtime):  # torchrun's SIGTERM after a peer died: the one line below, not silence
                metrics = task.train(cfg, Path(out), resume=not fresh, runtime=runtime)
        except KeyboardInterrupt:
            if not runtime.writer:
                sys.exit(130)
            if _settle(Path(out), aside, fresh) and (Path(out) / STATE_FILE).exists():
                click.echo(
                    f"\ninterrupted: the last finished epoch is saved; continue with `grukit train {task.name} --resume {out}`",
                    err=True,
                )
            else:  # nothing trained: leave no run that looks usable
                click.echo(
                    "\ninterrupted before the first epoch finished: nothing was saved, so there is nothing to resume"
                    + ("" if not fresh else f" ({out} removed{', the run it was replacing kept' if aside else ''})"),
                    err=True,
                )
            sys.exit(130)
        except RuntimeError as e:
            if runtime.world_size == 1 or os.environ.get("GRUKIT_DEBUG"):
                raise
            if runtime.writer:
                _settle(Path(out), aside, fresh)
            saved = (Path(out) / STATE_FILE).exists()
            click.echo(
                f"Error: rank {runtime.rank} of {runtime.world_size}: the process group failed "
                f"({str(e).splitlines()[0][:200]}); "
                + (f"the last finished epoch is kept: continue with --resume {out}" if saved else "nothing was saved"),
                err=True,
            )
            sys.exit(1)
        except BaseException:
            if runtime.writer:
                _settle(Path(out), aside, fresh)
            raise
        if not runtime.writer:
            return
        _settle(Path(out), aside, fresh)
        click.echo(json.dumps(metrics, indent=2) if as_json else task.summarize(metrics).render())
        click.echo(f"run written to {out} (every metric in {Path(out) / 'metrics.json'})")

    params = [
        click.Option(
            ["--out"], type=click.Path(file_okay=False), help="run directory to write (new or empty; see --overwrite)"
        ),
        click.Option(
            ["--overwrite"],
            is_flag=True,
            help="replace the run already in --out (only a grukit run directory is replaced)",
        ),
        click.Option(
            ["--resume"], type=click.Path(file_okay=False, exists=True), help="continue the interrupted run in DIR"
        ),
        click.Option(
            ["--json", "as_json"], is_flag=True, help="print every metric as JSON instead of the summary table"
        ),
    ]
    for f in dataclasses.fields(task.Config):
        flag = "--" + f.name.replace("_", "-")
        tp = _click_type(hints[f.name])
        help_text = f.metadata.get("help", "")
        if tp is bool:
            params.append(
                click.Option([f"{flag}/--no-{flag[2:]}", f.name], default=f.default, show_default=True, help=help_text)
            )
        else:
            choices = f.metadata.get("choices")
            ctype = click.Choice(choices) if choices else tp
            params.append(
                click.Option([flag, f.name], type=ctype, default=f.default, show_default=True, help=help_text)
            )
    return click.Command(
        task.name, callback=run, params=params, help=task.summary, short_help=task.summary.split(":")[0]
    )


for _task in TASKS.values():
    train_group.add_command(_train_command(_task))


def _task_of(run: str):
    return get_task(run_task_name(Path(run)))


@main.command("eval", short_help="Recompute a run's test metrics, or score it on --data.")
@click.argument("run", type=click.Path())
@click.option("--data", type=click.Path(), default=None, help="score on this file instead of the run's test split")
@click.option("--json", "as_json", is_flag=True, help="print every metric as JSON instead of the summary table")
def eval_cmd(run: str, data: str | None, as_json: bool) -> None:
    """Recompute the test metrics of a saved run (or score it on --data FILE)."""
    task = _task_of(run)
    metrics = task.evaluate(Path(run), data)
    click.echo(json.dumps(metrics, indent=2) if as_json else task.summarize(metrics).render())


@main.command("predict", short_help="Use a saved model on new input.")
@click.argument("run", type=click.Path())
@click.argument("values", nargs=-1)
@click.option("--data", type=click.Path(), default=None, help="input file, for tasks that read one")
@click.option(
    "--to",
    "to",
    type=click.Path(dir_okay=False),
    default=None,
    help="write the predictions to this CSV file (with a header) instead of printing them",
)
def predict_cmd(run: str, values: tuple[str, ...], data: str | None, to: str | None) -> None:
    """Use a saved model: e.g. `grukit predict DIR 123 456` for adding, `grukit predict DIR --data FILE` for the others."""
    table = _task_of(run).predict(Path(run), values, data)
    if to is not None:
        table.write_csv(to)
        click.echo(f"{len(table.rows)} prediction(s) written to {to}", err=True)
        return
    if table.text:
        click.echo(table.text)
        return
    if table.title:
        click.echo(table.title)
    for line in table.tsv():
        click.echo(line)


@main.command("generate", short_help="Sample from a saved model: text (lm) or music (MIDI, PNG, WAV).")
@click.argument("run", type=click.Path())
@click.option("--prompt", default="", help="text to start from (lm), or a MIDI file to continue (music)")
@click.option(
    "--length",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="items to generate (characters, or time steps of music)",
)
@click.option(
    "--temperature",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.0, max=1e6, min_open=True),
    callback=lambda ctx, p, v: _finite(p, v),
    help="sampling temperature, finite and > 0",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="music: the MIDI file to write, with its .png piano roll and .wav audio beside it [default: generated.mid]",
)
def generate_cmd(run: str, prompt: str, length: int, temperature: float, out: str | None) -> None:
    """Sample text from a saved language model, or music from a music run (writing MIDI, a piano-roll PNG and a WAV)."""
    result = _task_of(run).generate(Path(run), prompt, length, temperature)
    if isinstance(result, str):
        if out is not None:
            raise click.UsageError("--out is for tasks that write files (music); this run's samples are printed")
        click.echo(result)
        return
    base = Path(out or "generated.mid")
    for suffix, write in result.files.items():
        click.echo(write(base.with_suffix(suffix)))
    click.echo(result.text)
