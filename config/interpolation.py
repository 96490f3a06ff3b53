"""``${VAR}`` in a profile's YAML: expansion from the environment, and the check that a profile
which must not run on example secrets (production) gets a real value for every variable it uses.

The check names each offending variable and why: unset, empty, still an example value (anything
containing ``change-me``, or a development default this project once shipped), too short for a
secret, or holding characters that would break the URL it is spliced into. It never prints a
value. A key that the environment overrides (``AIRLOOP__SECTION__KEY``) no longer uses its
variable: a component that must not hold a secret (the training pod holds no serving token)
sets that key to empty (null) explicitly, and a non-empty override of a secret key is checked
like the variable it replaces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

VARIABLE = re.compile(r"\$\{(\w+)\}")
EXAMPLE_MARKERS = ("change-me", "changeme", "change_me")
"""An example value (``.env.example``) contains one of these."""
FORMER_DEFAULTS = frozenset(
    {"airloop", "airloop-secret-key", "minioadmin", "minioadmin-secret", "admin", "password", "secret"}
)
"""Development defaults the compose file once applied silently: never a production secret."""
SECRET_NAME = re.compile(r"(PASSWORD|TOKEN|SECRET|KEY)$")
"""Variables whose name ends like this hold secrets (``MLFLOW_PUBLIC_URL`` does not)."""
MIN_SECRET_LENGTH = 16
URL_SAFE = re.compile(r"[A-Za-z0-9._~-]*")
"""What a secret spliced into a URL or a Redis connection string may hold without quoting
(``secrets.token_urlsafe`` and ``token_hex`` values do)."""


class InsecureConfig(ValueError):
    """A profile that needs real secrets was loaded without them; ``problems`` maps each
    variable to why it was refused."""

    def __init__(self, profile: str, problems: Mapping[str, str]) -> None:
        self.profile = profile
        self.problems = dict(problems)
        lines = "\n".join(f"  - {name}: {why}" for name, why in sorted(self.problems.items()))
        super().__init__(
            f"the {profile} profile refuses to load with missing or example secrets "
            f"({len(self.problems)}):\n{lines}\nSet each in the environment (docker compose: .env; "
            "see .env.example for what each one is and how to generate it)."
        )


def expand(node: Any, environ: Mapping[str, str]) -> Any:
    """Expand ``${VAR}`` in string values (unset: empty), so secrets stay in the environment."""
    if isinstance(node, dict):
        return {k: expand(v, environ) for k, v in node.items()}
    if isinstance(node, list):
        return [expand(v, environ) for v in node]
    if isinstance(node, str) and "${" in node:
        return VARIABLE.sub(lambda m: environ.get(m.group(1), ""), node)
    return node


def references(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str, str]]:
    """``(key path, variable, the raw string)`` for every ``${VAR}`` in a YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from references(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from references(value, (*path, str(index)))
    elif isinstance(node, str):
        for match in VARIABLE.finditer(node):
            yield path, match.group(1), node


def _overridden(overrides: Mapping[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    """Whether an ``AIRLOOP__`` override replaces ``path`` (or a key above it), and with what."""
    node: Any = overrides
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
        if not isinstance(node, dict):
            return True, node
    return True, node


def why_refused(name: str, value: str | None, *, in_url: bool) -> str | None:
    """Why ``value`` cannot be the production value of variable ``name`` (``None``: it can)."""
    if value is None:
        return "unset"
    if not value.strip():
        return "empty"
    lowered = value.lower()
    if any(marker in lowered for marker in EXAMPLE_MARKERS) or lowered in FORMER_DEFAULTS:
        return "still an example value (from .env.example or an old default): generate a real one"
    if SECRET_NAME.search(name) and len(value) < MIN_SECRET_LENGTH:
        return f"too short for a secret ({len(value)} characters, at least {MIN_SECRET_LENGTH})"
    if in_url and not URL_SAFE.fullmatch(value):
        return "holds characters that break the URL it is spliced into (use secrets.token_urlsafe)"
    return None


def _spliced(raw: str) -> bool:
    """A variable inside a URL or a ``host:port,key=value`` connection string, not a whole value."""
    return VARIABLE.fullmatch(raw) is None


def _env_name(path: tuple[str, ...]) -> str:
    return "AIRLOOP__" + "__".join(key.upper() for key in path)


def secret_problems(raw: Any, environ: Mapping[str, str], overrides: Mapping[str, Any]) -> dict[str, str]:
    """Every variable the profile ``raw`` (YAML, before expansion) uses that has no real value
    in ``environ``, and every non-empty override of a secret key that is not a real value."""
    used: dict[str, list[str]] = {}
    spliced: set[str] = set()
    problems: dict[str, str] = {}
    for path, name, text in references(raw):
        replaced, value = _overridden(overrides, path)
        if not replaced:
            used.setdefault(name, []).append(".".join(path))
            if _spliced(text):
                spliced.add(name)
        elif value is not None and SECRET_NAME.search(name):
            why = why_refused(name, str(value), in_url=False)
            if why:
                problems[_env_name(path)] = f"{why} (overrides {'.'.join(path)}, which reads {name})"
    for name, keys in used.items():
        why = why_refused(name, environ.get(name), in_url=name in spliced)
        if why:
            problems[name] = f"{why} (used by {', '.join(keys)})"
    return problems
