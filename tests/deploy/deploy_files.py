"""Reading the deployment files as Docker does, and running a compose service as a local process.

``docker compose`` is not available on these machines, so the tests read docker-compose.yml,
.env.example and the Dockerfile themselves: variables are substituted with compose's rules, a
service's command is entrypoint + command (the image's ENTRYPOINT and CMD when the service has
none), its environment is the image's ENV plus the service's, and its bind mounts and named
volumes become local folders. What cannot be reproduced locally is replaced explicitly by the
caller (the storage URL of a private test schema instead of the `db` service, simulated GPUs).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spectune.storage.testing import Process

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"


# -- compose variables ------------------------------------------------------------------------


class MissingVariable(Exception):
    """A ``${VAR:?message}`` (or ``${VAR?message}``) whose variable is unset (or empty)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a compose .env file; comments and blank lines skipped."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        key, sep, value = text.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise ValueError(f"{path}:{number}: not KEY=VALUE: {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


_BRACED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
_TOKEN = re.compile(r"\$\$|\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\$")


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with compose's substitutions: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``,
    ``${VAR-default}``, ``${VAR:?message}``, ``${VAR?message}``, ``${VAR:+alt}``, ``${VAR+alt}``.

    A colon form treats an empty value like an unset one. Nested substitutions are refused:
    docker-compose v1 does not know them, so the compose file must not need them.
    """

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$$":
            return "$"
        if token == "$":
            raise ValueError(f"a lone '$' in {text!r}: write $$ for a literal dollar")
        if not token.startswith("${"):
            return variables.get(token[1:], "")
        braced = _BRACED.fullmatch(token)
        if braced is None or "$" in (braced.group(3) or ""):
            raise ValueError(f"unsupported substitution {token!r} in {text!r}")
        name, operator, argument = braced.group(1), braced.group(2), braced.group(3) or ""
        value = variables.get(name)
        present = value is not None and (value != "" or not (operator or "").startswith(":"))
        if operator is None:
            return value or ""
        if operator.endswith("-"):
            return value if present and value is not None else argument
        if operator.endswith("?"):
            if not present or value is None:
                raise MissingVariable(name, argument)
            return value
        return argument if present else ""  # + : the alternative when set

    return _TOKEN.sub(substitute, text)


def interpolate_tree(node: Any, variables: Mapping[str, str]) -> Any:
    """Every string value of a parsed YAML tree interpolated (keys are not, as in compose)."""
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [interpolate_tree(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, variables) for key, value in node.items()}
    return node


def variable_names(text: str) -> set[str]:
    """Names of the variables that ``text`` substitutes."""
    names = set()
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if token in ("$$", "$"):
            continue
        name = re.match(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", token)
        if name:
            names.add(name.group(1))
    return names


def raw_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as YAML (anchors and ``<<`` merges resolved), not interpolated."""
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def resolve_compose(
    variables: Mapping[str, str], files: tuple[Path, ...] = (COMPOSE_FILE,)
) -> dict[str, Any]:
    """The compose project as ``docker compose config`` would give it (for what we use):
    interpolated, later files merged into earlier ones (mappings merged, lists appended)."""
    merged: dict[str, Any] = {}
    for path in files:
        merged = _merge(merged, interpolate_tree(raw_compose(path), variables))
    return merged


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        result = dict(base)
        for key, value in override.items():
            result[key] = _merge(base[key], value) if key in base else value
        return result
    if isinstance(base, list) and isinstance(override, list):
        return base + override
    return override


def seconds(duration: str | int | float) -> float:
    """A compose duration (``120s``, ``1m30s``, ``2m``) in seconds."""
    if isinstance(duration, (int, float)):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a compose duration: {duration!r}")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
    return sum(float(number) * scale[unit] for number, unit in parts)


@dataclass(frozen=True)
class Volume:
    source: str  # a host path (bind) or a volume name
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith(("/", ".", "~"))


def volumes(service: Mapping[str, Any]) -> list[Volume]:
    """The service's volumes in short syntax ``SOURCE:TARGET[:ro|rw]``."""
    found = []
    for entry in service.get("volumes", []):
        assert isinstance(entry, str), f"use the short volume syntax: {entry!r}"
        source, target, *mode = entry.split(":")
        found.append(Volume(source, target, mode == ["ro"]))
    return found


# -- the Dockerfile ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    stage: str
    keyword: str  # upper case
    arguments: str
    line: int


def dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with their stage name; continuation lines joined, comments dropped."""
    instructions: list[Instruction] = []
    stage = ""
    pending: list[str] = []
    start = 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not pending and (not text or text.startswith("#")):
            continue
        if pending and text.startswith("#"):
            continue
        if not pending:
            start = number
        pending.append(text[:-1].strip() if text.endswith("\\") else text)
        if text.endswith("\\"):
            continue
        keyword, _, arguments = " ".join(part for part in pending if part).partition(" ")
        pending = []
        keyword = keyword.upper()
        if keyword == "FROM":
            named = re.search(r"\s+AS\s+(\S+)\s*$", arguments, re.IGNORECASE)
            stage = named.group(1) if named else arguments
        instructions.append(Instruction(stage, keyword, arguments.strip(), start))
    return instructions


def env_pairs(arguments: str) -> dict[str, str]:
    """``ENV A=1 B=2`` as a mapping (the legacy ``ENV A 1`` form is refused)."""
    pairs = {}
    for item in shlex.split(arguments):
        key, sep, value = item.partition("=")
        assert sep, f"use ENV KEY=VALUE, got {arguments!r}"
        pairs[key] = value
    return pairs


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = [i for i in instructions if i.keyword == "FROM"][-1].stage
    return [i for i in instructions if i.stage == last]


def image_environment(instructions: list[Instruction]) -> dict[str, str]:
    """ENV of the final stage (what every container starts with), PATH left out."""
    environment: dict[str, str] = {}
    for instruction in final_stage(instructions):
        if instruction.keyword == "ENV":
            environment.update(env_pairs(instruction.arguments))
    environment.pop("PATH", None)
    return environment


def exec_form(instructions: list[Instruction], keyword: str) -> list[str] | None:
    found = [i for i in final_stage(instructions) if i.keyword == keyword]
    if not found:
        return None
    value = json.loads(found[-1].arguments)
    assert isinstance(value, list), f"{keyword} must be in exec form (a JSON list)"
    return [str(item) for item in value]


# -- a compose service as a local process -----------------------------------------------------


# Folders the Dockerfile creates for the container user; a service that mounts nothing there
# still has them (empty). The stand-in gives each such service a scratch folder instead.
IMAGE_FOLDERS = ("/runs", "/data", "/gpu-slots")


@dataclass
class StandIn:
    """Runs services of a resolved compose project as local processes.

    A bind mount's container path becomes its host path (relative to the compose file, as
    compose resolves it), a named volume's becomes ``named_volumes[name]``, and an image folder
    that a service does not mount becomes a folder under ``scratch``; paths under them in the
    service's command, environment and working directory are rewritten. ``overrides`` replace
    environment variables afterwards: what has no local equivalent (the storage URL of a test
    schema instead of the `db` service, simulated GPUs).
    """

    project: dict[str, Any]
    named_volumes: dict[str, Path]
    scratch: Path
    overrides: dict[str, str] = field(default_factory=dict)
    instructions: list[Instruction] = field(default_factory=dockerfile)
    started: list[Process] = field(default_factory=list)

    def service(self, name: str) -> dict[str, Any]:
        service: dict[str, Any] = self.project["services"][name]
        return service

    def argv(self, name: str, extra: tuple[str, ...] = ()) -> list[str]:
        """entrypoint + command of service ``name``, as the container would exec it.

        ``extra`` replaces the command, as the arguments of ``docker compose run SERVICE ...``.
        """
        service = self.service(name)
        entrypoint = _as_list(service.get("entrypoint")) or exec_form(
            self.instructions, "ENTRYPOINT"
        )
        assert entrypoint is not None, "neither the service nor the image has an entrypoint"
        if extra:
            command = list(extra)
        elif "command" in service:
            command = _as_list(service["command"]) or []
        elif "entrypoint" in service:
            command = []  # a service's entrypoint drops the image's CMD
        else:
            command = exec_form(self.instructions, "CMD") or []
        return [self._local(part, name) for part in [*entrypoint, *command]]

    def environment(self, name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The container's environment, made local: host basics + image ENV + the service's."""
        bin_dir = str(Path(sys.executable).parent)  # the venv holding `spectune`
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SPECTUNE_", "POSTGRES_", "PYTHON"))
        }
        base["PATH"] = f"{bin_dir}{os.pathsep}{base.get('PATH', '')}"
        image = image_environment(self.instructions)
        service = {k: str(v) for k, v in (self.service(name).get("environment") or {}).items()}
        local = {key: self._local(value, name) for key, value in {**image, **service}.items()}
        return {**base, **local, **self.overrides, **(extra or {})}

    def workdir(self, name: str) -> Path:
        workdirs = [i.arguments for i in final_stage(self.instructions) if i.keyword == "WORKDIR"]
        return Path(self._local(workdirs[-1], name)) if workdirs else self.scratch

    def start(self, name: str, *extra: str, env: Mapping[str, str] | None = None) -> Process:
        """Start service ``name`` (``extra``: the arguments of ``docker compose run``)."""
        popen = subprocess.Popen(
            self.argv(name, extra),
            cwd=self.workdir(name),
            env=self.environment(name, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(Process(popen))
        return self.started[-1]

    def kill_leftovers(self) -> None:
        """SIGKILL what this stand-in started and is still running (a failed test's)."""
        for process in self.started:
            if process.popen.poll() is None:
                process.popen.kill()
                process.popen.wait(timeout=10)

    def run(
        self, name: str, *extra: str, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> Process:
        """Run service ``name`` to its end (a one-shot, or ``docker compose run --rm``)."""
        process = self.start(name, *extra, env=env)
        process.finish(timeout)
        return process

    def mounts(self, name: str) -> dict[str, Path]:
        """Container path -> local path, for every folder or file service ``name`` can see."""
        found: dict[str, Path] = {}
        for volume in volumes(self.service(name)):
            if volume.is_bind:
                source = Path(volume.source).expanduser()
                found[volume.target] = source if source.is_absolute() else ROOT / source
            else:
                assert volume.source in self.named_volumes, f"give a folder for {volume.source}"
                found[volume.target] = self.named_volumes[volume.source]
        for folder in IMAGE_FOLDERS:
            if folder not in found:
                found[folder] = self.scratch / name / folder.strip("/")
                found[folder].mkdir(parents=True, exist_ok=True)
        return found

    def _local(self, text: str, name: str) -> str:
        for target, local in sorted(self.mounts(name).items(), key=lambda i: -len(i[0])):
            pattern = rf"(?<![\w./-]){re.escape(target)}(?=$|/|[\s\"'])"
            text = re.sub(pattern, str(local).replace("\\", "\\\\"), text)
        return text


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [str(item) for item in value]


# -- .dockerignore ----------------------------------------------------------------------------


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` (relative, with /) out of the build context.

    The last pattern that matches the path or one of its parent folders decides; ``!`` patterns
    include. ``*`` and ``?`` stay within one path component, ``**`` spans any number.
    """
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        expression = _glob(pattern.strip("/"))
        if any(expression.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def _glob(pattern: str) -> re.Pattern[str]:
    out = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            out.append(".*")
            index += 2
        elif pattern[index] == "*":
            out.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(out))


def dockerignore_patterns(path: Path = DOCKERIGNORE) -> list[str]:
    return [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
