"""`lgdeploy profiles ...` (filled in below)."""
import typer

app = typer.Typer(no_args_is_help=True, help="List, show and validate device profiles.")
