"""`vmeta rate serve STUDY`: the blind side-by-side rating page for a study made by `vmeta rate new`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vmeta.cli.apps import console, err_console, rate_app


@rate_app.command("serve")
def serve(
    study: Annotated[Path, typer.Argument(help="Study folder (made by `vmeta rate new`).")],
    host: Annotated[
        str,
        typer.Option("--host", help="Address to bind; 0.0.0.0 lets raters on your network join (see below)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port of the rating page.")] = 8020,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the page in a browser tab.")] = False,
) -> None:
    """Serve the blind rating page: two answers as A and B, in random order per rater, model names hidden.

    Raters join by opening the URL and typing their name; the same name continues where it left off.

    Shortcuts: 1/A = A better, 2/B = B better, 3/T = tie, 4/W = both wrong, Enter = submit and next.

    Every rating is appended to STUDY/ratings.jsonl (who, when, which model was shown as A and as B).

    Raters on other machines: bind --host 0.0.0.0 and give them http://THIS-MACHINE:PORT/.
    """
    import uvicorn

    from vmeta.rating.app import create_rate_app
    from vmeta.web.common import is_loopback

    extra_hosts = None if is_loopback(host) else ["*"]
    app = create_rate_app(study, allowed_hosts=extra_hosts)
    st = app.state.study
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{shown}:{port}/"
    console.print(
        f"[bold]rating page:[/] {url}\n"
        f"study: {st.root} · {len(st.models)} models · {len(st.items)} items · "
        f"{st.raters_per_item} rater(s) per item · ratings so far: {len(st.ratings())}\n"
        "Raters join by opening this URL and typing their name (the same name continues where it left off).\n"
        "Ratings are appended to " + str(st.root / "ratings.jsonl") + "; report them with `vmeta rate report`.\n"
        "Press Ctrl+C to stop.",
        highlight=False,
        soft_wrap=True,
    )
    if is_loopback(host):
        console.print(
            "Only this machine can open the page; for raters on your network run again with --host 0.0.0.0.",
            highlight=False,
        )
    else:
        err_console.print(
            f"[yellow]warning:[/] binding {host}: raters open http://<this machine's address>:{port}/ — and so can "
            "anyone else who can reach it.",
            highlight=False,
            soft_wrap=True,
        )
    if st.meta.get("data") is None:
        err_console.print(
            "[yellow]note:[/] the study names no dataset (rate new --data), so raters see no video.", highlight=False
        )
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
