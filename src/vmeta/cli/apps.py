"""The Typer apps; command modules attach to them. Kept apart so command modules can import them."""

import typer
from rich.console import Console

app = typer.Typer(
    name="vmeta",
    help="Short-video metaphor understanding: build a dataset, fine-tune, evaluate, export, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Sheets + videos -> a reviewed, split, exportable dataset.", no_args_is_help=True)
models_app = typer.Typer(help="Model registry and local model tools.", no_args_is_help=True)
video_app = typer.Typer(help="Inspect videos and the frames a model will see.", no_args_is_help=True)
rate_app = typer.Typer(
    help="Human evaluation: blind side-by-side rating studies of prediction files, and their report.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")
app.add_typer(video_app, name="video")
app.add_typer(models_app, name="models")
app.add_typer(rate_app, name="rate")

console = Console()
err_console = Console(stderr=True)
