"""`data.env_kwargs` typed by the env's own signature, so the CLI merges, validates and prints it.

Which env a run makes is itself a setting (`data.env_id`), so its class is found before the
parser is built: from the configs and overrides on the command line, then the registry entry
point of the id. The parsed settings reach the env as YAML data (`gymnasium.make(id, **kwargs)`),
not as objects: each env copy and each worker builds its own data module and reward.
"""

from __future__ import annotations

import importlib
import json
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import yaml
from gymnasium.envs.registration import load_env_creator
from jsonargparse import ArgumentParser, Namespace

import nasprune.envs  # noqa: F401  (registers the nasprune/* env ids)

DEFAULT_ENV_ID = "nasprune/NasPrune-v0"
KEY = "data.env_kwargs"


def env_class(env_id: str) -> Any | None:
    """What the registry entry of `env_id` calls (normally the env class); None when the id is
    unknown or its module cannot be imported (`make_env` then reports it, naming `data.env_id`).

    A `module:Env-v0` id imports `module` first, as `gymnasium.make` does.
    """
    module, sep, name = env_id.rpartition(":")
    try:
        if sep:
            importlib.import_module(module)
        entry_point = gym.spec(name).entry_point
        return load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    except Exception:  # whatever the user's module raises, `make_env` reports it in one line
        return None


def env_id_in(args: Sequence[str]) -> str:
    """The `data.env_id` a command line selects: the last of its config files and overrides.

    Read by hand (the full parser cannot exist before this is known); only the forms of
    `data.env_id` a LightningCLI command line can hold are read: `-c/--config FILE`,
    `--data FILE`, `--data.env_id ID`, each also with `=`.
    """
    env_id = DEFAULT_ENV_ID
    pairs = [arg.split("=", 1) if arg.startswith("--") and "=" in arg else [arg] for arg in args]
    flat = [part for pair in pairs for part in pair]
    for flag, value in zip(flat, flat[1:]):
        if flag in ("-c", "--config"):
            loaded = _load(value)
            env_id = _env_id_of(loaded.get("data") if isinstance(loaded, dict) else None, env_id)
        elif flag == "--data":
            env_id = _env_id_of(_load(value), env_id)
        elif flag == "--data.env_id":
            env_id = value
    return env_id


def _load(value: str) -> Any:
    """A config file's YAML, or the value itself as YAML (jsonargparse accepts both)."""
    try:
        text = Path(value).read_text(encoding="utf-8") if Path(value).is_file() else value
        return yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # `cli` reports an unreadable config file, naming it


def _env_id_of(data: Any, current: str) -> str:
    return str(data["env_id"]) if isinstance(data, dict) and data.get("env_id") else current


def add_env_arguments(parser: ArgumentParser, env_id: str) -> None:
    """`data.env_kwargs.*` from the signature of `env_id`'s class (an untyped mapping when unknown)."""
    cls = env_class(env_id)
    if cls is not None and inspect.signature(cls).parameters:
        parser.add_class_arguments(cls, KEY, fail_untyped=False, sub_configs=True, instantiate=False)
    else:
        parser.add_argument(f"--{KEY}", type=dict | None, default=None, help="keyword arguments of the env")


def as_env_kwargs(config: Namespace) -> Namespace:
    """`config` with `data.env_kwargs` as plain YAML data (instantiation then leaves it alone)."""
    settings = config.get(KEY)
    if not isinstance(settings, Namespace):
        return config
    config = config.clone()
    # a JSON round trip leaves plain YAML data: jsonargparse's restricted numbers (`PositiveInt`)
    # become ints, tuples lists, so hparams and worker processes see what a config file holds
    config[KEY] = json.loads(json.dumps(settings.as_dict(), default=str))
    return config
