"""Making the env a config names, with user errors turned into one line naming the config key."""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

from nasprune.config import ConfigError


def make_env(env_id: str | gym.envs.registration.EnvSpec, env_kwargs: dict[str, Any] | None = None, max_episode_steps: int | None = None) -> gym.Env:
    """`gymnasium.make`, its errors reported against `data.env_id` / `data.env_kwargs`.

    Any id `gymnasium.make` accepts works, including `my_package.my_module:MyEnv-v0`, which
    imports the user's module (and so registers its env) first. The `nasprune/*` ids are
    registered by `import nasprune.envs` (the CLI does it). Workers get the parent's `EnvSpec`
    instead of the id, so they need no registration of their own.
    """
    kwargs = dict(env_kwargs or {})
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    if isinstance(env_id, str) and ":" in env_id:
        _import_env_module(env_id)
    try:
        return gym.make(env_id, **kwargs)
    except ConfigError as err:
        raise err.under("data.env_kwargs") from None
    except gym.error.Error as err:
        raise ConfigError("data.env_id", f"{env_id!r} cannot be made: {err}") from None
    except ImportError as err:
        raise ConfigError("data.env_id", f"{env_id!r}: cannot import its module ({err})") from None
    except TypeError as err:
        raise ConfigError("data.env_kwargs", f"{env_id!r} rejected its arguments: {err}") from None


def _import_env_module(env_id: str) -> None:
    """Import the `module` of `module:Env-v0` (it registers the env), whatever it raises as one line."""
    module = env_id.partition(":")[0]
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ConfigError("data.env_id", f"{env_id!r}: cannot import its module ({err})") from None
    except Exception as err:  # the user's module is broken: say how, in one line
        raise ConfigError("data.env_id", f"{env_id!r}: importing its module {module!r} raised {type(err).__name__}: {' '.join(str(err).split())}") from None
