"""The Typer apps; command modules attach to them. Kept apart so command modules can import them."""

import typer
from rich.console import Console, ConsoleDimensions

# Output that is not a terminal (CI logs, `| tee`, a file) has no width; rich then assumes 80 columns (or the
# width of whatever terminal stdin/stderr is) and breaks paths and sentences mid-way. This width means "do not
# wrap"; a set COLUMNS still wins.
NOT_A_TERMINAL_WIDTH = 1000


class CliConsole(Console):
    """The CLI's console: the terminal's width on a terminal, NOT_A_TERMINAL_WIDTH when the output is not one.
    Decided on every print (not at import), so a console made before stdout is redirected still follows it."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not self.is_terminal:  # _width is set by Console(width=…) or COLUMNS
            return ConsoleDimensions(NOT_A_TERMINAL_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


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

console = CliConsole()
err_console = CliConsole(stderr=True)
