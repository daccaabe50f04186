"""`promo server start|status|stop`: the local Prefect server (and its worker) the commands on this machine use."""

from __future__ import annotations

from typing import Annotated

import typer

from promo.cli.app import app


server_app = typer.Typer(
    help="A local Prefect server with its UI, which every promo command on this machine then uses.",
    no_args_is_help=True,
)
app.add_typer(server_app, name="server")


@server_app.command("start")
def server_start(
    port: Annotated[int, typer.Option(help="port of the API and UI (a free one if it is taken)")] = 4200,
    with_worker: Annotated[
        bool, typer.Option("--with-worker", help="also start a process worker, which runs the deployments")
    ] = False,
    pool: Annotated[str, typer.Option(help="work pool the worker polls")] = "promo",
) -> None:
    """Start the local Prefect server (or find it running) and wait until it answers."""
    from promo.local.prefect_server import start_server, start_worker

    started = start_server(port)
    server = started.process
    state = "running" if started.reused else "started"
    typer.echo(f"Prefect server {state}: UI {server.url} (pid {server.pid}, log {server.log_path})")
    if with_worker:
        worker = start_worker(server, pool)
        state = "running" if worker.reused else "started"
        typer.echo(f"process worker {state} on pool {pool} (pid {worker.process.pid}, log {worker.process.log_path})")
    typer.echo("promo commands here now use it (unless PREFECT_API_URL names another); `promo server stop` stops it")


@server_app.command("status")
def server_status() -> None:
    """Show the local Prefect server's URL, PID and health, and its worker's."""
    from promo.local.prefect_server import running_server, running_worker

    server = running_server()
    if server is None:
        typer.echo("Prefect server: not running (start it with `promo server start`)")
        return
    health = "healthy" if server.healthy() else f"not answering (read {server.log_path})"
    typer.echo(f"Prefect server: UI {server.url}, API {server.api_url}, pid {server.pid}, {health}")
    worker = running_worker()
    typer.echo(f"process worker: pool {worker.pool}, pid {worker.pid}" if worker else "process worker: not running")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server and its worker, by the PIDs they were started with."""
    from promo.local.prefect_server import stop_server

    stopped = stop_server()
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "the local Prefect server was not running")
