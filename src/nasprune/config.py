"""Config plumbing shared by every room: the user-facing error, `class_path` objects and the
restricted number types the CLI checks.

The CLI types and validates env settings (`nasprune.env_settings`), but they reach an env
through `gymnasium.make` as plain YAML data; `instantiate` turns a `class_path`/`init_args`
mapping into its object there.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

import yaml
from jsonargparse.typing import register_type

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
D = TypeVar("D", bound="DataclassInstance")  # a settings dataclass

# The weight bit-widths a searched layer may take (`BitWidth`).
MIN_BITS, MAX_BITS = 2, 8

# Number types jsonargparse checks when it parses a config (the error names the key). Type
# checkers see the plain number types: jsonargparse makes these classes at runtime.
if TYPE_CHECKING:
    PositiveInt: TypeAlias = int
    NonNegativeInt: TypeAlias = int
    PositiveFloat: TypeAlias = float
    NonNegativeFloat: TypeAlias = float
    NonPositiveFloat: TypeAlias = float
    ClosedUnitInterval: TypeAlias = float
    OpenUnitInterval: TypeAlias = float
    UnitRatio: TypeAlias = float
    BitWidth: TypeAlias = int
    PositiveFraction: TypeAlias = float
    PositiveCount: TypeAlias = int
    PositiveNumber: TypeAlias = float
    DecayRate: TypeAlias = float
else:
    from jsonargparse.typing import (
        ClosedUnitInterval,
        NonNegativeFloat,
        NonNegativeInt,
        OpenUnitInterval,
        PositiveFloat,
        PositiveInt,
        restricted_number_type,
    )

    NonPositiveFloat = restricted_number_type("NonPositiveFloat", float, ("<=", 0), docstring="float restricted to be ≤0")
    UnitRatio = restricted_number_type("UnitRatio", float, [(">=", 0), ("<", 1)], docstring="float restricted to be ≥0 and <1")
    BitWidth = restricted_number_type("BitWidth", int, [(">=", MIN_BITS), ("<=", MAX_BITS)], docstring="int restricted to 2..8")
    PositiveFraction = restricted_number_type("PositiveFraction", float, [(">", 0), ("<=", 1)], docstring="float restricted to be >0 and ≤1")


def plain_number_type(name: str, kind: type[int] | type[float], description: str, accepts: Callable[[Any], bool]) -> type:
    """A number type jsonargparse checks that hands over a plain `int` or `float`.

    For the arguments of LightningModules and data modules: Lightning saves those as
    hyperparameters (`hparams.yaml`, checkpoints read with `weights_only`), where a restricted
    type above would leave its own class. (`Annotated[float, Gt(0)]` would stay plain too, but
    jsonargparse drops `Annotated` from postponed annotations.)
    """
    number_type = type(name, (kind,), {"__doc__": f"{kind.__name__} {description}"})

    def deserialize(value: Any) -> int | float:
        number = yaml.safe_load(value) if isinstance(value, str) else value
        if kind is float and isinstance(number, int) and not isinstance(number, bool):
            number = float(number)
        if isinstance(number, bool) or not isinstance(number, kind) or not accepts(number):
            raise ValueError(f"must be {description}, got {number!r}")
        return number

    register_type(number_type, serializer=kind, deserializer=deserialize)
    return number_type


if not TYPE_CHECKING:
    PositiveCount = plain_number_type("PositiveCount", int, "a positive integer", lambda n: n > 0)
    PositiveNumber = plain_number_type("PositiveNumber", float, "a positive number", lambda n: n > 0)
    DecayRate = plain_number_type("DecayRate", float, "in [0, 1)", lambda n: 0 <= n < 1)


class ConfigError(ValueError):
    """Bad user input. The message is one line that names the config key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.detail = message
        super().__init__(f"{key}: {message}")

    def under(self, prefix: str) -> ConfigError:
        """The same error with its key placed under an enclosing config key."""
        return ConfigError(f"{prefix}.{self.key}", self.detail)


def under(key: str, build: Callable[[Any], T], value: Any) -> T:
    """`build(value)`, with any `ConfigError` it raises placed under the config key `key`."""
    try:
        return build(value)
    except ConfigError as err:
        raise err.under(key) from None


def dataclass_from_config(cls: type[D], config: Mapping[str, Any] | D | None, what: str) -> D:
    """A settings dataclass from a mapping of its fields (an instance passes through); an unknown key
    is a `ConfigError` naming it and the allowed ones."""
    if isinstance(config, cls):
        return config
    config = dict(cast("Mapping[str, Any] | None", config) or {})  # not an instance: a mapping of its fields
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise ConfigError(unknown[0], f"unknown {what} key; allowed: {', '.join(sorted(allowed))}")
    return cls(**config)


class SearchError(RuntimeError):
    """A search that cannot go on (not a child's failure: those earn a penalty). The message is
    one line that says what happened and what to do."""


def import_object(path: str, key: str) -> Any:
    """Import `package.module.Name` (or `package.module:Name`)."""
    module_name, sep, attr = path.replace(":", ".").rpartition(".")
    if not sep:
        raise ConfigError(key, f"'{path}' is not an importable 'module.Name' path")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(key, f"cannot import module '{module_name}' ({err})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(key, f"module '{module_name}' has no attribute '{attr}'") from None


def instantiate(spec: Any, base: type[T], key: str, default: type[T] | None = None) -> T:
    """Build a `base` from an instance, a `{class_path, init_args}` mapping or `None` (the default).

    A bare mapping without `class_path` is taken as the init args of `default`.
    """
    if isinstance(spec, base):
        return spec
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ConfigError(key, f"expected a mapping with class_path/init_args, got {spec!r}")
    spec = dict(spec)
    if "class_path" in spec:
        cls = import_object(str(spec.pop("class_path")), f"{key}.class_path")
        init_args = dict(spec.pop("init_args", None) or {})
        if spec:
            raise ConfigError(key, f"unknown keys {sorted(spec)}; allowed: class_path, init_args")
    elif default is not None:
        cls, init_args = default, spec
    else:
        raise ConfigError(key, "missing 'class_path'")
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise ConfigError(f"{key}.class_path", f"{cls!r} is not a subclass of {base.__name__}")
    accepted = inspect.signature(cls).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    unknown = sorted(set(init_args) - set(accepted))
    if unknown and not takes_kwargs:
        raise ConfigError(f"{key}.init_args", f"unknown arguments {unknown} for {cls.__name__}; allowed: {sorted(accepted)}")
    try:
        return cls(**init_args)
    except ConfigError as err:
        raise err.under(f"{key}.init_args") from None


def packaged_configs() -> Path:
    """The folder of YAML configs shipped inside the installed package."""
    configs = importlib.import_module("nasprune.configs").__file__
    assert configs is not None  # a regular package (it has an __init__.py)
    return Path(configs).parent


def resolve_config_path(value: str) -> str:
    """Find a config given as a path, or by name among the packaged configs.

    `-c configs/digits.yaml` works from a checkout (a real path) and from anywhere once the
    package is installed (the packaged copy of `digits.yaml`).
    """
    if Path(value).exists():
        return value
    root = packaged_configs()
    name = Path(value)
    parts = name.parts[1:] if name.parts and name.parts[0] == "configs" else name.parts
    for candidate in (root.joinpath(*parts), root.joinpath(*parts).with_suffix(".yaml")):
        if candidate.is_file():
            return str(candidate)
    return value
