"""Flyte Python tasks that the fake workspace runs for real, in a subprocess, through pyflyte-execute."""

from flytekit import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def explode(reason: str) -> int:
    if reason:
        raise ValueError(f"boom: {reason}")
    return 0
