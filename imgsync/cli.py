"""The command line: parse, load the config, run one action, map errors to exit codes.

``main()`` is the only place that turns an :class:`ImgsyncError` into a message and an
exit code; actions raise, they do not print errors.

Each command imports what it needs when it runs (docker-py, paramiko, pydantic, rich and
prometheus-client cost most of a second together): ``imgsync --version`` imports none of
them, and a peer's session says hello before it loads its config.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from imgsync import __version__
from imgsync.configpath import DEFAULT_PATH, ENV_VAR, resolve_path
from imgsync.errors import ExitCode, ImgsyncError

if TYPE_CHECKING:
    from imgsync import config as cfg
    from imgsync.model import Report, StatusRow


class _Context:
    def __init__(self, config_path: Path, verbose: int) -> None:
        self.config_path = config_path
        self.verbose = verbose

    def load(self) -> cfg.Config:
        from imgsync import config as cfg

        return cfg.load(self.config_path)

    def receiver(self) -> cfg.ReceiverConfig:
        from imgsync import config as cfg

        return cfg.require_receiver(self.load(), self.config_path)


def _log(level: int, stream: object = None) -> None:
    from imgsync import log

    log.configure(level=level, stream=stream or sys.stderr)  # type: ignore[arg-type]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help=f"Config file (default: ${ENV_VAR}, then {DEFAULT_PATH}).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.version_option(__version__, prog_name="imgsync")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """Keep Docker images in sync from a source host to its peers over SSH."""
    ctx.obj = _Context(resolve_path(config_path), verbose)
    if ctx.invoked_subcommand != "apply" or "--session" not in sys.argv:
        _log({0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG))


@cli.command()
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="REF",
    help="Only this image (repeatable; must be in source.images).",
)
@click.option("--peer", "peers", multiple=True, metavar="NAME", help="Only this peer (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every result.")
@click.option(
    "--no-wait",
    is_flag=True,
    help=f"Exit {ExitCode.LOCKED.value} instead of waiting for a running cycle.",
)
@click.option(
    "--dry-run", is_flag=True, help="Only say what would be exported and sent; change nothing."
)
@click.pass_obj
def sync(
    obj: _Context,
    images: tuple[str, ...],
    peers: tuple[str, ...],
    as_json: bool,
    no_wait: bool,
    dry_run: bool,
) -> int:
    """Run one cycle: export what changed, send each peer what it lacks, apply it."""
    from imgsync.actions import sync as sync_action
    from imgsync.render import results
    from imgsync.source.cycle import CycleOptions

    config = obj.load()
    if dry_run:
        planned = sync_action.dry_run(config, obj.config_path, images, peers)
        lines = [results.dry_run_json(planned)] if as_json else results.dry_run_lines(planned)
        for line in lines:
            click.echo(line)
        return ExitCode.OK if planned.ok else ExitCode.FAILED
    options = CycleOptions(images=images, peers=peers, wait=not no_wait)
    live = not as_json and _terminal(sys.stdout)
    report = sync_action.run(config, obj.config_path, options, live)
    if not live:  # on a terminal, the summary table was printed under the bars
        _print_report(report, as_json)
    return ExitCode.OK if report.ok else ExitCode.FAILED


def _print_report(report: Report, as_json: bool) -> None:
    from imgsync.render import results

    lines = [results.sync_json(report)] if as_json else results.sync_lines(report)
    for line in lines:
        click.echo(line)


def _terminal(stream: object) -> bool:
    """Whether ``stream`` is a terminal that can show live bars."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


@cli.command()
@click.option(
    "--image", "images", multiple=True, metavar="REF", help="Only this image's marker (repeatable)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (what the source reads).")
@click.option(
    "--inventory", is_flag=True, help="Only report what the engine runs and the inbox holds."
)
@click.option("--clean-temp", is_flag=True, help="With --inventory: drop leftover temp files.")
@click.option(
    "--has-layer", "has_layers", multiple=True, metavar="CHAIN_ID",
    help="Only report which of these layers (chain IDs) the engine holds, and its store.",
)  # fmt: skip
@click.option("--receive", metavar="NAME", help="Take one file on stdin into the inbox as NAME.")
@click.option("--size", type=click.IntRange(0), help="With --receive: the file's size in bytes.")
@click.option("--offset", type=click.IntRange(0), default=0, help="With --receive: resume here.")
@click.option(
    "--compression", type=click.Choice(["none", "zstd"]), default="none",
    help="With --receive: stdin is zstd frames (imgsync.bundle.wire).",
)  # fmt: skip
@click.option(
    "--session", is_flag=True,
    help="Serve a whole cycle on stdin/stdout in frames (what the source starts).",
)  # fmt: skip
@click.option("--watch", is_flag=True, help="Keep running: apply new markers as they land.")
@click.option(
    "--poll",
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    type=click.FloatRange(0.1, 3600),
    help="With --watch: how often to look.",
)
@click.pass_obj
def apply(obj: _Context, /, **options: Any) -> int:
    """On a peer: load what landed in the inbox, verified, when it is new."""
    form = _ApplyForm(**options)
    if form.session:
        return _session(obj)
    from imgsync.actions import apply as apply_action

    receiver, wanted = obj.receiver(), _references(form.images)
    if form.receive is not None:
        return _receive(receiver, form)
    if form.has_layers:
        return _echo(apply_action.layers(receiver, list(form.has_layers)))
    if form.watch:
        return _watch(receiver, wanted, form.poll)
    if form.inventory:  # a bare one is what `check` asks; a sync's names its images
        return _echo(apply_action.report(receiver, wanted, clean=form.clean_temp))
    return _apply_markers(receiver, wanted, form.as_json)


@dataclass(frozen=True)
class _ApplyForm:
    """The options of ``apply``: which of its forms is asked, and that form's arguments."""

    images: tuple[str, ...]
    as_json: bool
    inventory: bool
    clean_temp: bool
    has_layers: tuple[str, ...]
    receive: str | None
    size: int | None
    offset: int
    compression: str
    session: bool
    watch: bool
    poll: float


def _references(images: tuple[str, ...]) -> list[str]:
    from imgsync.reference import InvalidReference, normalize

    try:
        return [normalize(image) for image in images]
    except InvalidReference as err:
        raise click.BadParameter(str(err), param_hint="--image") from None


def _echo(text: str) -> int:
    click.echo(text)
    return ExitCode.OK


def _receive(receiver: cfg.ReceiverConfig, form: _ApplyForm) -> int:
    """``apply --receive NAME --size N``: one file on stdin into the inbox."""
    from imgsync.actions import apply as apply_action

    if form.receive is None or form.size is None:
        raise click.UsageError("--receive needs --size")
    name, stdin = form.receive, sys.stdin.buffer
    return _echo(
        apply_action.receive(receiver, name, form.size, form.offset, stdin, form.compression)
    )


def _watch(receiver: cfg.ReceiverConfig, wanted: list[str], poll: float) -> int:
    """``apply --watch``: until SIGTERM or SIGINT."""
    from imgsync.actions import apply as apply_action
    from imgsync.adapters.signals import install_stop_handlers

    apply_action.watch(receiver, wanted, poll, stop=install_stop_handlers())
    return ExitCode.OK


def _apply_markers(receiver: cfg.ReceiverConfig, wanted: list[str], as_json: bool) -> int:
    """``apply``: every marker (or those of ``wanted``), one outcome each."""
    from imgsync import protocol
    from imgsync.actions import apply as apply_action
    from imgsync.render import results

    outcomes = apply_action.markers(receiver, wanted)
    lines = [protocol.dump_apply(outcomes)] if as_json else results.apply_lines(outcomes)
    for line in lines:
        click.echo(line)
    return ExitCode.OK if all(o.error is None for o in outcomes) else ExitCode.FAILED


def _session(obj: _Context) -> int:
    """``apply --session``: hello first, then the config, logging and the rest."""
    from imgsync.receiver.session import Session

    # The peer's side never speaks SSH itself: docker-py's optional ssh:// transport would
    # import paramiko (and invoke) for nothing, a quarter of the session's start-up.
    sys.modules.setdefault("paramiko", None)  # type: ignore[arg-type]

    def receiver() -> cfg.ReceiverConfig:
        _log({0: logging.WARNING, 1: logging.INFO}.get(obj.verbose, logging.DEBUG))
        return obj.receiver()

    def relay_status() -> list[StatusRow] | None:
        from imgsync.actions import status as status_action

        config = obj.load()
        if config.source is None or not config.peers:
            return None
        return status_action.run(config, obj.config_path)

    code = Session(receiver, sys.stdin.buffer, sys.stdout.buffer, relay_status).run()
    # Its work is done and said: leave without tearing the interpreter down (a tenth of a
    # second of CPU per peer per cycle, paid while the source waits for every peer's exit).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@cli.command()
@click.pass_context
def serve(ctx: click.Context) -> int:
    """The forced command for the source's key on a peer: only what a sync needs."""
    from imgsync.actions import serve as serve_action

    args = serve_action.apply_args(os.environ.get("SSH_ORIGINAL_COMMAND"))
    result = apply.main(args=args, prog_name="imgsync apply", standalone_mode=False, obj=ctx.obj)
    return int(result) if isinstance(result, int) else ExitCode.OK


@cli.command()
@click.pass_context
def daemon(ctx: click.Context) -> int:
    """Run cycles on the schedule and when a source image changes, until stopped."""
    from imgsync.actions import daemon as daemon_action

    verbose = ctx.parent.params["verbose"] if ctx.parent else 0
    _log(logging.DEBUG if verbose > 1 else logging.INFO, sys.stdout)
    obj: _Context = ctx.obj
    daemon_action.Daemon(obj.config_path, obj.load()).serve()
    return ExitCode.OK


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object with every row.")
@click.option("--fleet", is_flag=True, help="Also ask each relay what its own peers run.")
@click.pass_obj
def status(obj: _Context, as_json: bool, fleet: bool) -> int:
    """What each peer runs as the last sync saw it, and whether it is current (no network;
    with --fleet, each relay is asked for its site's hosts)."""
    from imgsync.actions import status as status_action
    from imgsync.render import status as shown

    rows = status_action.run(obj.load(), obj.config_path, fleet)
    lines = [shown.to_json(rows)] if as_json else shown.lines(rows)
    for line in lines:
        click.echo(line)
    return ExitCode.OK if status_action.all_current(rows) else ExitCode.FAILED


@cli.command()
@click.pass_obj
def check(obj: _Context) -> int:
    """Check every peer (SSH, host key, key, imgsync, Docker, inbox); say how to fix it."""
    from imgsync.actions import check as check_action
    from imgsync.render import checklist

    checks = check_action.run(obj.load(), obj.config_path)
    for line in checklist.lines(checks):
        click.echo(line)
    return ExitCode.OK if all(c.ok for c in checks) else ExitCode.FAILED


def main(argv: list[str] | None = None) -> int:
    try:
        result = cli.main(args=argv, prog_name="imgsync", standalone_mode=False)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.ClickException as err:
        err.show()
        return ExitCode.CONFIG
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("imgsync: interrupted", err=True)
        return ExitCode.INTERRUPTED
    except ImgsyncError as err:
        click.echo(f"imgsync: {err}", err=True)
        return err.exit_code
    return int(result) if isinstance(result, int) else ExitCode.OK
