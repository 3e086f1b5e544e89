"""Root of the `assistant` command: builds the typer app from the per-capability command modules."""

from __future__ import annotations

import typer

from cli import eval_cmds, export_cmds, ingest_cmds, loop_cmds, serve_cmds, sources_cmds, train_cmds

app = typer.Typer(
    name="assistant",
    help="RAG + fine-tuning assistant platform: ingest documents, chat with citations, train LoRA adapters.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Evaluate retrieval, answers and adapters.", no_args_is_help=True)

serve_cmds.register(app)
loop_cmds.register(app)
ingest_cmds.register(app, eval_app)
train_cmds.register(app, eval_app)
eval_cmds.register(eval_app)
export_cmds.register(app)
sources_cmds.register(app)
app.add_typer(eval_app, name="eval")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
