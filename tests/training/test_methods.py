"""The method table (`training.methods.METHODS`) is the one list of methods: every other place reads it."""

from __future__ import annotations

import typing

from training.methods import METHOD_NAMES, METHODS, config_class, runner_class


def test_every_place_that_lists_methods_reads_the_table() -> None:
    from cli.train_cmds import register
    from serving.schemas import JobSpec
    from serving.web import _training_defaults
    from training.data.feedback_data import JOB_SOURCES
    from training.job_options import METHOD_OPTIONS
    from training.options import METHOD_FLAGS

    assert set(typing.get_args(JobSpec.model_fields["method"].annotation)) == set(METHOD_NAMES)
    assert set(METHOD_FLAGS) == set(METHOD_OPTIONS) == set(_training_defaults()) == set(METHODS)
    assert {name: METHODS[name].sources for name in JOB_SOURCES} == JOB_SOURCES
    import typer

    root, evals = typer.Typer(), typer.Typer()
    register(root, evals)
    train_app = root.registered_groups[0].typer_instance
    assert train_app is not None
    assert [c.name for c in train_app.registered_commands] == list(METHOD_NAMES)


def test_each_row_names_its_runner_and_config_without_import_side_effects() -> None:
    import dataclasses

    for name, row in METHODS.items():
        from training.trainers import MethodRunner

        assert issubclass(runner_class(name), MethodRunner), name
        assert dataclasses.is_dataclass(config_class(name)), name
        assert row.kind in ("lm", "reward") and row.sources and row.help
    assert METHODS["reward"].kind == "reward" and "file" in METHODS["classify"].sources
