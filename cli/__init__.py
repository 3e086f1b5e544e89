"""The `assistant` command line: one typer app whose typed function signatures are the interface.

Commands import their heavy dependencies inside the function body, so `assistant --help` stays fast.
"""
