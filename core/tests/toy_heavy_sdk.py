"""Stands in for a service SDK that is slow to import; the host must not import it at start-up."""


def submit(key: str) -> str:
    return f"job-{key}"
